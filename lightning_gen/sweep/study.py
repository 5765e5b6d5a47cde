"""A sweep as an Optuna study: storage, creation and joining, and the worker loop that hands trials out.

A grid's trials (configuration x seed) are enqueued once, by whichever worker creates the study; a search's worker
asks the sampler for a new configuration when the queue is empty and enqueues its other seeds. Every worker then
pops trials from the queue, and a popped trial belongs to that worker alone: Optuna moves a trial from WAITING to
RUNNING atomically in both the journal file and the RDB storages, so no two workers run the same trial.

Grids enqueue their points instead of letting :class:`~optuna.samplers.GridSampler` pick them because the sampler
may hand the same point to two workers that ask at the same moment (its documentation says so); the study still
carries a :class:`QueuedGridSampler` (a ``GridSampler`` over the same space that leaves stopping to the queue).

A few decisions must be taken by exactly one of several workers (enqueueing the grid, retrying a dead trial,
rerunning a stale one). Both storages refuse a second study of the same name, so a worker "claims" such a
decision by creating a marker study named ``<study>:claim:<what>``; only the worker whose creation succeeds acts.

Dead trials: a trial records its process's host and pid and refreshes a ``heartbeat`` while it runs. A RUNNING
trial whose process is gone (same host) or whose heartbeat is older than ``stale_after`` seconds is marked failed
with that reason and enqueued again; the retry resumes from the run folder's last checkpoint when it can see it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import optuna
except ImportError as error:  # an optional dependency: pip install 'lightning-gen[sweep]'
    raise ImportError("Sweeps run on Optuna: pip install 'lightning-gen[sweep]' (or pip install optuna).") from error
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from lightning_gen import _compat
from lightning_gen._version import __version__
from lightning_gen.sweep.settings import PRUNERS, SAMPLERS, SweepSettings
from lightning_gen.sweep.spec import SweepSpec, short_key

__all__ = [
    "DEFAULT_STUDY_NAME",
    "JOURNAL_FILE",
    "QueuedGridSampler",
    "SweepStudy",
    "create_or_join",
    "current_version",
    "open_storage",
    "open_sweep",
    "run_worker",
]

DEFAULT_STUDY_NAME = "sweep"
JOURNAL_FILE = "study.journal"
_READY_TIMEOUT = 120.0  # seconds a joining worker waits for the creator to enqueue the grid

logger = logging.getLogger(__name__)


def current_version() -> str:
    """The library version trials record; a finished trial made by another version is "stale"."""
    return __version__


def _quiet_optuna() -> None:
    # Optuna logs every trial state change at INFO; the sweep prints its own one-line summaries.
    optuna.logging.set_verbosity(optuna.logging.WARNING)


# ------------------------------------------------------------------------------------------------ storage


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL (``sqlite:///sweep.db``, ``postgresql://...``, ``mysql://...``) or the path of a
    journal file (any other string), which needs no server and is Optuna's way to share a study over a file system.

    Example:
        >>> import tempfile, os
        >>> storage = open_storage(os.path.join(tempfile.mkdtemp(), "study.journal"))
        >>> type(storage).__name__
        'JournalStorage'
    """
    if "://" in location:
        kwargs: dict[str, Any] = {}
        if location.startswith("sqlite"):
            # Several processes write one SQLite file; wait for its lock instead of failing at once.
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(location, **kwargs)
            except Exception as error:  # noqa: BLE001 - only the first-use race below is retried
                # Workers that open a new database at the same instant race to create its tables; the losers
                # fail on a duplicate row or table, after which the tables exist and opening again succeeds.
                if attempt == 4 or type(error).__name__ not in ("IntegrityError", "OperationalError"):
                    raise
                time.sleep(0.2 * (attempt + 1))
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    Path(location).parent.mkdir(parents=True, exist_ok=True)
    # The open(O_EXCL) lock works on NFS and Lustre, where the default symlink lock may not.
    return optuna.storages.JournalStorage(
        JournalFileBackend(str(location), lock_obj=JournalFileOpenLock(str(location)))
    )


def _retry_busy(action: Callable[[], Any], attempts: int = 20) -> Any:
    """Run a storage call again when SQLite reports its database busy (two writers at the same instant)."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - only "database is locked" is retried, see below
            if "database is locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return None


def _claim(storage: optuna.storages.BaseStorage, study_name: str, what: str) -> bool:
    """Whether this process is the one that gets to do ``what`` (see the module docstring)."""
    try:
        _retry_busy(
            lambda: storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], f"{study_name}:claim:{what}")
        )
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ the study


class QueuedGridSampler(optuna.samplers.GridSampler):
    """The ``GridSampler`` of a grid whose points are enqueued trials (see the module docstring).

    Optuna's ``GridSampler`` counts the points it handed out itself and stops the study after the last; enqueued
    trials carry no such record (and a grid over several configs is conditional: a VAE trial has no ``n_critic``),
    so here the queue alone says when the grid is done and ``after_trial`` leaves the study running.
    """

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        return None


def _sampler(name: str, search_space: dict[str, list[Any]] | None) -> optuna.samplers.BaseSampler:
    if search_space is not None:
        return QueuedGridSampler(search_space, seed=0)
    # Unseeded on purpose: workers sharing one seed would sample the same configurations (every one of them draws
    # its start-up trials at random), and a search with several workers is not reproducible draw for draw anyway.
    seed = None
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        # The exception: QMC indexes one shared low-discrepancy sequence by trial number, so workers must agree on it.
        return optuna.samplers.QMCSampler(seed=0)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"Unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")


def _pruner(name: str, settings: SweepSettings, startup_trials: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if name == "hyperband":
        # Resources are generator steps, the unit the trials report in.
        budget = settings.generator_steps or "auto"
        return optuna.pruners.HyperbandPruner(min_resource=settings.eval_every or 1, max_resource=budget)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"Unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}.")


def _distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """Every Optuna parameter of the sweep, by short name (``config`` when there are several configs)."""
    found: dict[str, BaseDistribution] = {}
    if len(spec.configs) > 1:
        found["config"] = CategoricalDistribution(list(spec.config_paths()))
    for key, values in spec.grid.items():
        found[short_key(key)] = CategoricalDistribution(list(values))
    for key, distribution in spec.search.items():
        found[short_key(key)] = distribution
    return found


@dataclass
class SweepStudy:
    """An opened sweep: the Optuna study plus what its creator stored about it.

    Attributes:
        study: The Optuna study (sampler and pruner as the sweep was created with).
        storage_location: What :func:`open_storage` was given (handed to trial processes).
        info: The study's ``sweep`` user attribute: identity, settings, config paths, keys, seeds, trials.
    """

    study: optuna.Study
    storage_location: str
    info: dict[str, Any]

    @property
    def settings(self) -> SweepSettings:
        return SweepSettings.from_dict(self.info["identity"]["settings"])

    @property
    def kind(self) -> str:
        return self.info["identity"]["kind"]

    @property
    def seeds(self) -> list[int | None]:
        return list(self.info["identity"]["seeds"] or [None])

    @property
    def varied(self) -> list[str]:
        return list(self.info["varied"])

    def distributions(self) -> dict[str, BaseDistribution]:
        return {
            name: optuna.distributions.json_to_distribution(text) for name, text in self.info["distributions"].items()
        }

    def trials(self, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=tuple(states) if states else None)


def _study_info(spec: SweepSpec, pruner: str, sampler: str, startup_trials: int) -> dict[str, Any]:
    return {
        "identity": spec.identity(),
        "trials": spec.trials,
        "config_paths": spec.config_paths(),
        "full_keys": spec.full_keys,
        "keys_for": {label: [short_key(k) for k in spec.keys_for(label)] for label in spec.config_paths()},
        "varied": spec.varied,
        "distributions": {n: optuna.distributions.distribution_to_json(d) for n, d in _distributions(spec).items()},
        "pruner": pruner,
        "sampler": sampler,
        "pruner_startup_trials": startup_trials,
    }


def _load(storage: optuna.storages.BaseStorage, location: str, study_name: str) -> SweepStudy:
    study = optuna.load_study(study_name=study_name, storage=storage)
    info = study.user_attrs.get("sweep")
    if info is None:
        raise ValueError(f"Study {study_name!r} in {location} was not made by lightning-gen sweep (no 'sweep' record).")
    settings = SweepSettings.from_dict(info["identity"]["settings"])
    grid_space = None
    if info["identity"]["kind"] == "grid":
        grid_space = {
            name: list(optuna.distributions.json_to_distribution(text).choices)
            for name, text in info["distributions"].items()
        }
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=_sampler(info["sampler"], grid_space),
        pruner=_pruner(info["pruner"], settings, info["pruner_startup_trials"]),
    )
    return SweepStudy(study, location, info)


def open_sweep(location: str, study_name: str = DEFAULT_STUDY_NAME) -> SweepStudy:
    """Open an existing sweep study (what trial processes and ``--report-only`` do).

    Raises:
        KeyError: No study of that name in the storage.
    """
    _quiet_optuna()
    return _load(open_storage(location), location, study_name)


def create_or_join(
    spec: SweepSpec,
    location: str,
    study_name: str = DEFAULT_STUDY_NAME,
    *,
    pruner: str | None = None,
    sampler: str = "tpe",
    pruner_startup_trials: int = 5,
) -> SweepStudy:
    """Create the sweep's study, or join it when another worker (or an earlier run) already has.

    The creator stores the sweep's identity and enqueues a grid's trials; a joining worker checks that it was given
    the same sweep and, for a search, raises the stored number of trials when given more.

    Args:
        spec: The sweep.
        location: Storage URL or journal file path (see :func:`open_storage`).
        study_name: Name of the study in the storage.
        pruner: ``"median"``, ``"hyperband"`` or ``"none"``; default none for grids (every point of a table is
            wanted) and median for searches.
        sampler: ``"tpe"``, ``"random"``, ``"qmc"`` or ``"gp"`` for searches (grids use ``GridSampler``).
        pruner_startup_trials: Trials the median pruner lets finish before it prunes.

    Raises:
        ValueError: The storage holds a study of that name made for a different sweep.
    """
    _quiet_optuna()
    pruner = pruner or ("median" if spec.kind == "search" else "none")
    _pruner(pruner, spec.settings, pruner_startup_trials)  # validate the names before touching the storage
    if spec.kind == "search":
        _sampler(sampler, None)
    storage = open_storage(location)
    info = _study_info(spec, pruner, sampler, pruner_startup_trials)
    try:
        created = _retry_busy(
            lambda: optuna.create_study(
                storage=storage, study_name=study_name, direction=spec.settings.resolved_direction
            )
        )
    except optuna.exceptions.DuplicatedStudyError:
        created = None
    if created is not None:
        created.set_user_attr("sweep", info)
        if spec.kind == "grid":
            for configuration in spec.configurations():
                params = dict(configuration.params)
                if len(spec.configs) > 1:
                    params = {"config": configuration.label, **params}
                for index, seed in enumerate(spec.seed_list):
                    created.enqueue_trial(params, user_attrs=_trial_attrs(configuration.label, seed, index, info))
        created.set_user_attr("ready", True)
    joined = _wait_until_ready(storage, location, study_name)
    stored = joined.info["identity"]
    if stored != info["identity"]:
        changed = sorted(
            key for key in set(stored) | set(info["identity"]) if stored.get(key) != info["identity"].get(key)
        )
        raise ValueError(
            f"Study {study_name!r} in {location} holds a different sweep (these differ: {', '.join(changed)}). "
            f"Rerun with the original command, or start a new sweep with another --out or --study-name."
        )
    if spec.trials is not None and spec.trials > (joined.info.get("trials") or 0):
        joined.info["trials"] = spec.trials
        joined.study.set_user_attr("sweep", joined.info)
    return joined


def _wait_until_ready(storage: optuna.storages.BaseStorage, location: str, study_name: str) -> SweepStudy:
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
            if study.user_attrs.get("ready"):
                return _load(storage, location, study_name)
        except KeyError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Study {study_name!r} in {location} exists but its creator never finished setting it up (killed "
                f"while enqueueing?). Delete the storage (or use another --study-name) and start again."
            )
        time.sleep(0.5)


def _trial_attrs(label: str, seed: int | None, seed_index: int, info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"config_label": label, "seed": seed, "seed_index": seed_index, **extra}


# ------------------------------------------------------------------------------------------ handing out trials


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
    raise TypeError(f"Unsupported distribution {distribution!r} for {name!r}.")


def _fill_params(sweep: SweepStudy, trial: optuna.Trial, label: str | None) -> str:
    """Suggest the trial's parameters (fixed for enqueued trials, sampled for new ones); return its config label."""
    distributions = sweep.distributions()
    if "config" in distributions:
        label = _suggest(trial, "config", distributions["config"])
    label = label or next(iter(sweep.info["config_paths"]))
    for name in sweep.info["keys_for"][label]:
        _suggest(trial, name, distributions[name])
    return label


def _pop_waiting(sweep: SweepStudy) -> optuna.Trial | None:
    """Take the oldest WAITING trial for this process, or ``None`` when the queue is empty."""
    storage = _compat.study_storage(sweep.study)
    for frozen in sweep.trials([TrialState.WAITING]):
        trial_id = _compat.trial_id(frozen)
        try:
            claimed = _retry_busy(lambda: storage.set_trial_state_values(trial_id, TrialState.RUNNING))  # noqa: B023
        except optuna.exceptions.UpdateFinishedTrialError:
            # The list is a snapshot: another worker took this trial and finished it since (short trials, or
            # this process waiting on the storage's lock). Optuna raises rather than returning False then.
            claimed = False
        if claimed:
            trial = optuna.Trial(sweep.study, _compat.trial_id(frozen))
            _fill_params(sweep, trial, frozen.user_attrs.get("config_label"))
            return trial
    return None


def _new_search_trial(sweep: SweepStudy) -> optuna.Trial | None:
    """Sample a new configuration for its first seed and enqueue its other seeds; ``None`` once the search is full.

    Workers that find the search one short at the same instant may each sample one: a search can end up to
    (workers - 1) configurations over ``--trials``, never under, and no trial is run twice.
    """
    started = [t for t in sweep.trials() if t.user_attrs.get("seed_index") == 0 and "retry_of" not in t.user_attrs]
    started = [t for t in started if "rerun_of" not in t.user_attrs]
    if len(started) >= (sweep.info.get("trials") or 0):
        return None
    trial = sweep.study.ask()
    if "seed_index" in trial.user_attrs:  # another worker enqueued a seed repeat meanwhile: take that
        _fill_params(sweep, trial, trial.user_attrs.get("config_label"))
        return trial
    label = _fill_params(sweep, trial, None)
    seeds = sweep.seeds
    for name, value in _trial_attrs(label, seeds[0], 0, sweep.info).items():
        trial.set_user_attr(name, value)
    for index, seed in enumerate(seeds[1:], start=1):
        sweep.study.enqueue_trial(trial.params, user_attrs=_trial_attrs(label, seed, index, sweep.info))
    return trial


def _enqueue_again(sweep: SweepStudy, frozen: FrozenTrial, **marker: Any) -> None:
    attrs = _trial_attrs(
        frozen.user_attrs.get("config_label"), frozen.user_attrs.get("seed"), frozen.user_attrs.get("seed_index", 0),
        sweep.info, **marker,
    )  # fmt: skip
    sweep.study.enqueue_trial(dict(frozen.params), user_attrs=attrs)


def _process_gone(worker: dict[str, Any] | None) -> bool:
    if not worker or worker.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(worker["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError):
        return False
    return False


def recover_dead_trials(sweep: SweepStudy, stale_after: float) -> list[int]:
    """Fail RUNNING trials whose process died, and enqueue each again (once, whichever worker sees it first).

    Returns:
        Numbers of the trials this call marked failed.
    """
    recovered = []
    now = time.time()
    for frozen in sweep.trials([TrialState.RUNNING]):
        worker = frozen.user_attrs.get("worker")
        heartbeat = frozen.user_attrs.get("heartbeat") or frozen.datetime_start.timestamp()
        gone = _process_gone(worker)
        silent = now - heartbeat > stale_after
        if not (gone or silent) or not _claim(_compat.study_storage(sweep.study), sweep.study.study_name, f"retry/{frozen.number}"):
            continue
        where = f"process {worker['pid']} on {worker['host']}" if worker else "its worker"
        reason = "ended without finishing it" if gone else f"sent no heartbeat for {now - heartbeat:.0f}s"
        storage = _compat.study_storage(sweep.study)
        try:
            storage.set_trial_user_attr(_compat.trial_id(frozen), "error", f"WorkerLost: {where} {reason} (killed?)")
            storage.set_trial_state_values(_compat.trial_id(frozen), TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished after all
        _enqueue_again(sweep, frozen, retry_of=frozen.number)
        recovered.append(frozen.number)
    return recovered


def _latest_attempts(sweep: SweepStudy) -> dict[int, FrozenTrial]:
    """Trials no retry or rerun has superseded, by number (two trials of a search may share their parameters, so
    only the ``retry_of`` / ``rerun_of`` links say that one trial repeats another)."""
    trials = sweep.trials()
    repeated = {t.user_attrs.get(link) for t in trials for link in ("retry_of", "rerun_of")}
    return {t.number: t for t in trials if t.number not in repeated}


def enqueue_retries(sweep: SweepStudy) -> list[int]:
    """Enqueue a new attempt of every failed trial that has none yet (``--retry-failed``)."""
    done = []
    for frozen in _latest_attempts(sweep).values():
        if frozen.state == TrialState.FAIL and _claim(
            _compat.study_storage(sweep.study), sweep.study.study_name, f"retry/{frozen.number}"
        ):
            _enqueue_again(sweep, frozen, retry_of=frozen.number)
            done.append(frozen.number)
    return done


def stale_trials(sweep: SweepStudy, version: str | None = None) -> list[FrozenTrial]:
    """Finished trials (complete or pruned), not superseded, that another library version produced."""
    version = version or current_version()
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    return [
        t for t in _latest_attempts(sweep).values()
        if t.state in finished and t.user_attrs.get("library_version") != version
    ]  # fmt: skip


def enqueue_reruns(sweep: SweepStudy) -> list[int]:
    """Enqueue a rerun of every stale trial (``--rerun-stale``), once across workers."""
    version = current_version()
    done = []
    for frozen in stale_trials(sweep, version):
        if _claim(_compat.study_storage(sweep.study), sweep.study.study_name, f"rerun/{frozen.number}/{version}"):
            _enqueue_again(sweep, frozen, rerun_of=frozen.number)
            done.append(frozen.number)
    return done


def run_worker(
    sweep: SweepStudy,
    execute: Callable[[SweepStudy, optuna.Trial], None],
    *,
    stale_after: float = 300.0,
    max_trials: int | None = None,
    on_trial_end: Callable[[FrozenTrial], None] | None = None,
) -> list[int]:
    """Take trials from the study and run them until none is left; return the numbers of those this worker ran.

    Args:
        sweep: The joined study.
        execute: Runs one trial to its end (in this process or in a child process) and tells the study its state.
        stale_after: Seconds without a heartbeat after which another worker's RUNNING trial counts as dead.
        max_trials: Stop after this many trials (``None``: until the queue and the search are exhausted).
        on_trial_end: Called with each finished trial (progress lines).
    """
    ran: list[int] = []
    while max_trials is None or len(ran) < max_trials:
        recover_dead_trials(sweep, stale_after)
        trial = _pop_waiting(sweep)
        if trial is None and sweep.kind == "search":
            trial = _new_search_trial(sweep)
        if trial is None:
            break
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        trial.set_user_attr("heartbeat", time.time())
        execute(sweep, trial)
        ran.append(trial.number)
        if on_trial_end is not None:
            on_trial_end(sweep.study.get_trials(deepcopy=False)[trial.number])
    return ran
