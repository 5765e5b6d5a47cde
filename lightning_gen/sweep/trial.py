"""Running one trial of a sweep: train through the ``lightning-gen fit`` code path, report, tell the study.

A trial builds its model, data and trainer with the same LightningCLI as ``lightning-gen fit`` (the config file,
the trial's overrides as ``--model.init_args.loss=hinge``-style arguments, ``--seed_everything``), adds the
sweep's shared callbacks (:mod:`.callbacks`), and trains. Each evaluation is stored in the trial (user attribute
``evaluations``) and its objective reported to Optuna at the generator step it was made, so the pruner can stop
the trial. At the end the study is told COMPLETE (with the final objective), PRUNED, or FAIL (with the error).

The LightningCLI is passed in as ``cli_factory`` (``lightning_gen.cli.run_lightning_cli``) because library code
does not import the command line package. :func:`trial_command` is the command that runs a trial in a process
of its own, which is how workers run them: a crash or a leak stays in that process, and DDP (``--devices 2``)
relaunches that process, not the worker.

Only process 0 of a multi-process trial writes to the study; the pruning decision is broadcast to the others.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from lightning_gen import _compat
from lightning_gen.sweep import study as _study
from lightning_gen.sweep.study import SweepStudy

__all__ = ["SAMPLES_FILE", "TrialRun", "run_trial", "run_dir_name", "trial_command"]

SAMPLES_FILE = "samples.png"
CliFactory = Callable[..., Any]


def _slug(text: str, limit: int = 80) -> str:
    import re

    text = re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")
    return text[:limit].rstrip("_") or "run"


def run_dir_name(label: str, params: dict[str, Any], seed: int | None) -> str:
    """Folder of a trial's checkpoint and logs: its settings, seed and library version, so that a retry of the same
    trial resumes there and a rerun after a version change starts afresh.

    Example:
        >>> run_dir_name("gan", {"config": "gan", "loss": "hinge"}, 1).startswith("gan_loss=hinge_seed1-")
        True
    """
    import hashlib
    import json

    readable = [label] + [f"{k}={v}" for k, v in params.items() if k != "config"]
    if seed is not None:
        readable.append(f"seed{seed}")
    identity = json.dumps(
        {"label": label, "params": params, "seed": seed, "version": _study.current_version()}, sort_keys=True
    )
    return f"{_slug('_'.join(readable))}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def trial_command(location: str, study_name: str, trial_number: int, runs_dir: str | os.PathLike) -> list[str]:
    """The command that runs one trial in a fresh process (``lightning-gen sweep --run-trial N``)."""
    return [
        sys.executable, "-m", "lightning_gen.cli", "sweep", "--storage", location, "--study-name", study_name,
        "--runs-dir", str(runs_dir), "--run-trial", str(trial_number),
    ]  # fmt: skip


class _Heartbeat:
    """Refreshes the trial's ``heartbeat`` user attribute from a thread, so a dead process can be told apart."""

    def __init__(self, trial: optuna.Trial, every: float) -> None:
        self.trial, self.every = trial, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # noqa: BLE001 - a finished trial or a busy storage: the next beat tries again
                pass

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class TrialRun:
    """One trial of a sweep, resolved from the study: which config, overrides and seed, and where it works.

    Args:
        sweep: The opened study.
        trial: The trial (RUNNING, its parameters suggested by the worker).
        runs_dir: Parent folder of the run folders.
    """

    def __init__(self, sweep: SweepStudy, trial: optuna.Trial, runs_dir: str | os.PathLike) -> None:
        self.sweep, self.trial = sweep, trial
        frozen = _compat.study_storage(sweep.study).get_trial(_compat.trial_id(trial))
        self.params = dict(frozen.params)
        self.label = frozen.user_attrs.get("config_label") or self.params.get("config")
        self.seed = frozen.user_attrs.get("seed")
        self.config_path = sweep.info["config_paths"][self.label]
        self.run_dir = Path(runs_dir) / run_dir_name(self.label, self.params, self.seed)
        self.settings = sweep.settings

    def cli_args(self) -> list[str]:
        """Arguments that make LightningCLI build this trial's model, data and trainer."""
        keys = self.sweep.info["full_keys"]
        args = ["--config", self.config_path]
        args += [f"--{keys[name]}={value}" for name, value in self.params.items() if name != "config"]
        if self.seed is not None:
            args.append(f"--seed_everything={self.seed}")
        return args

    def trainer_overrides(self) -> dict[str, Any]:
        from lightning.pytorch.loggers import CSVLogger

        settings = self.settings
        overrides: dict[str, Any] = {
            "default_root_dir": str(self.run_dir),
            # One logger layout for every trial whatever the configs say, so trials never write into each other's.
            "logger": CSVLogger(save_dir=str(self.run_dir), name="logs"),
            "max_steps": -1,
            "max_epochs": settings.epochs if settings.epochs is not None else -1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        }
        if settings.accelerator is not None:
            overrides["accelerator"] = settings.accelerator
        if settings.devices is not None:
            overrides["devices"] = settings.devices
        return overrides


def _configured_callbacks(cli: Any) -> list[Any]:
    """The callbacks the config itself lists, instantiated (not Lightning's defaults the CLI's trainer added)."""
    declared = cli.config.get("trainer.callbacks") or []
    instantiated = cli.config_init.get("trainer.callbacks") or []
    if not isinstance(instantiated, list):
        return [instantiated]
    return list(instantiated[: len(declared) if isinstance(declared, list) else 1])


def _is_process_zero() -> bool:
    # Lightning's DDP launcher starts the other processes with LOCAL_RANK set; a sweep trial runs on one node.
    return os.environ.get("LOCAL_RANK", "0") == "0"


def _train(run: TrialRun, cli_factory: CliFactory, process_zero: bool) -> float:
    """Train and evaluate; return the final objective. Raises ``optuna.TrialPruned`` when the pruner says so."""
    from lightning.pytorch.callbacks import Checkpoint

    from lightning_gen._images import save_grid
    from lightning_gen.sweep.callbacks import EvaluationRecorder, GeneratorStepBudget, TrainTimer, metrics_callbacks

    settings, trial = run.settings, run.trial
    with warnings.catch_warnings():
        # The CLI is handed its arguments while sys.argv holds the sweep's own, which is intended here.
        warnings.filterwarnings("ignore", ".*LightningCLI's args parameter is intended.*")
        cli = cli_factory(run.cli_args(), run=False)
    model, datamodule = cli.model, cli.datamodule
    run.run_dir.mkdir(parents=True, exist_ok=True)
    if process_zero:
        resolved = cli.parser.dump(cli.config, skip_none=False)
        (run.run_dir / "config.yaml").write_text(resolved)
        trial.set_user_attr("config", resolved)
        trial.set_user_attr("parameters", sum(p.numel() for p in model.parameters() if p.requires_grad))

    def report(trainer: Any, record: dict[str, Any]) -> None:
        prune = False
        if process_zero:
            trial.set_user_attr("evaluations", recorder.records)
            value = record.get(settings.objective)
            if value is not None:
                trial.report(value, record["generator_step"])
                # Nothing is saved by pruning a trial at its last step (the budget callback, which runs first, has
                # just asked the trainer to stop): it completes, and the pruner sees its value all the same.
                prune = trainer.state.fn == "fit" and not trainer.should_stop and trial.should_prune()
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            if process_zero:
                _record_timings(trial, recorder)
            raise optuna.TrialPruned(
                f"{settings.objective}={record.get(settings.objective)} at generator step {record['generator_step']}"
            )

    metrics = metrics_callbacks(settings)
    recorder = EvaluationRecorder(metrics, run.run_dir, report)
    configured = _configured_callbacks(cli)
    overrides = run.trainer_overrides()
    if not any(isinstance(callback, Checkpoint) for callback in configured):
        overrides["enable_checkpointing"] = False  # the recorder keeps checkpoints/last.ckpt
    callbacks = [TrainTimer(recorder), GeneratorStepBudget(settings.generator_steps), *configured, *metrics, recorder]
    trainer = cli.instantiate_trainer(**overrides, callbacks=callbacks)
    checkpoint = run.run_dir / EvaluationRecorder.CHECKPOINT
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint.is_file() else None)
    from lightning_gen.sweep.callbacks import generator_step

    final_step = generator_step(trainer, model)
    if final_step not in recorder.evaluated_steps:
        # The end of training off the schedule: the metric callbacks always evaluate under trainer.validate().
        trainer.validate(model, datamodule=datamodule, verbose=False)
        if final_step not in recorder.evaluated_steps:
            raise RuntimeError(
                f"The final evaluation at generator step {final_step} did not run: the data module has no validation "
                f"data for trainer.validate(). Make --eval-every divide the budget or give the data a validation split."
            )
    recorder.save_checkpoint(trainer)
    final = recorder.records[-1]
    if process_zero:
        save_grid(model.sample(64, seed=settings.sample_seed), run.run_dir / SAMPLES_FILE)
        _record_timings(trial, recorder)
        trial.set_user_attr("generator_steps", final_step)
    value = final.get(settings.objective)
    if value is None:
        available = sorted(
            k for k, v in final.items() if isinstance(v, float) and k not in ("train_seconds", "wall_seconds")
        )
        raise ValueError(
            f"The objective {settings.objective!r} was not recorded at the final evaluation (step {final_step}); "
            f"recorded: {available}. Choose one with --objective or add its metrics with --metrics."
        )
    return float(value)


def _record_timings(trial: optuna.Trial, recorder: Any) -> None:
    trial.set_user_attr("evaluations", recorder.records)
    trial.set_user_attr("train_seconds", round(recorder.train_seconds, 3))
    trial.set_user_attr("train_images", recorder.train_images)
    trial.set_user_attr("wall_seconds", round(recorder.wall_seconds, 3))
    trial.set_user_attr("session_start_steps", recorder.session_start_steps)


def run_trial(
    sweep: SweepStudy,
    trial: optuna.Trial,
    runs_dir: str | os.PathLike,
    cli_factory: CliFactory,
    *,
    heartbeat_every: float = 30.0,
) -> optuna.trial.TrialState:
    """Run one RUNNING trial to its end and tell the study how it ended.

    An exception inside the trial (a non-finite loss, a bad override, an out-of-memory error) fails this trial
    only: its message goes into the trial's ``error`` attribute and the traceback into ``error.txt`` in its
    folder. A pruned trial is told PRUNED. Anything that is not an ``Exception`` (Ctrl+C, a kill) leaves the trial
    RUNNING, and a later worker retries it from its last checkpoint.

    Args:
        sweep: The opened study.
        trial: The trial, popped by a worker (see :func:`~lightning_gen.sweep.study.run_worker`).
        runs_dir: Parent folder of the run folders.
        cli_factory: ``lightning_gen.cli.run_lightning_cli`` (called as ``cli_factory(args, run=False)``).
        heartbeat_every: Seconds between heartbeats.

    Returns:
        The trial's final state.
    """
    run = TrialRun(sweep, trial, runs_dir)
    process_zero = _is_process_zero()
    if not process_zero:  # another rank of a DDP trial: train along, leave the study to process 0
        try:
            _train(run, cli_factory, process_zero)
        except optuna.TrialPruned:
            pass
        return optuna.trial.TrialState.RUNNING
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
    trial.set_user_attr("library_version", _study.current_version())
    trial.set_user_attr("run_dir", str(run.run_dir))
    trial.set_user_attr("heartbeat", time.time())
    (run.run_dir / "error.txt").unlink(missing_ok=True)
    with _Heartbeat(trial, heartbeat_every):
        try:
            value = _train(run, cli_factory, process_zero)
        except optuna.TrialPruned as pruned:
            trial.set_user_attr("pruned", str(pruned))
            state, values = optuna.trial.TrialState.PRUNED, None
        except Exception as error:  # noqa: BLE001 - isolating any failure of one trial is the point
            run.run_dir.mkdir(parents=True, exist_ok=True)
            (run.run_dir / "error.txt").write_text(traceback.format_exc())
            trial.set_user_attr("error", f"{type(error).__name__}: {error}".strip()[:2000])
            state, values = optuna.trial.TrialState.FAIL, None
        else:
            state, values = optuna.trial.TrialState.COMPLETE, [value]
    sweep.study.tell(trial, values=values, state=state)
    return state


def run_trial_in_process(
    location: str, study_name: str, trial_number: int, runs_dir: str | os.PathLike, cli_factory: CliFactory
) -> int:
    """Entry of a trial process (:func:`trial_command`): open the study, run trial ``trial_number``; exit code 0."""
    from lightning_gen.sweep.study import open_sweep

    sweep = open_sweep(location, study_name)
    frozen = sweep.study.get_trials(deepcopy=False)[trial_number]
    if frozen.state != optuna.trial.TrialState.RUNNING:
        raise ValueError(
            f"Trial {trial_number} of {study_name!r} is {frozen.state.name}, not RUNNING; a worker pops it first."
        )
    run_trial(sweep, optuna.Trial(sweep.study, _compat.trial_id(frozen)), runs_dir, cli_factory)
    return 0


def run_in_subprocess(command: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> int:
    """Run a trial process, its output going to ``log_path``; return its exit code."""
    import subprocess

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.call(list(command), stdout=log, stderr=subprocess.STDOUT, env=env)


def in_process_executor(
    runs_dir: str | os.PathLike, cli_factory: CliFactory
) -> Callable[[SweepStudy, optuna.Trial], None]:
    """An ``execute`` for :func:`~lightning_gen.sweep.study.run_worker` that trains in the worker's own process
    (for tests and debugging; a crash then takes the worker down with it)."""

    def execute(sweep: SweepStudy, trial: optuna.Trial) -> None:
        run_trial(sweep, trial, runs_dir, cli_factory)

    return execute


def subprocess_executor(
    runs_dir: str | os.PathLike, logs_dir: str | os.PathLike, env: dict[str, str] | None = None
) -> Callable[[SweepStudy, optuna.Trial], None]:
    """An ``execute`` that runs each trial in a process of its own (:func:`trial_command`), its output in
    ``logs_dir/trial-N.log``. A process that dies without telling the study (a segfault, the OOM killer) fails its
    trial with the exit code and the end of its output."""

    def execute(sweep: SweepStudy, trial: optuna.Trial) -> None:
        log_path = Path(logs_dir) / f"trial-{trial.number}.log"
        command = trial_command(sweep.storage_location, sweep.study.study_name, trial.number, runs_dir)
        code = run_in_subprocess(command, log_path, env)
        storage = _compat.study_storage(sweep.study)
        if storage.get_trial(_compat.trial_id(trial)).state == optuna.trial.TrialState.RUNNING:
            tail = log_path.read_text(errors="replace")[-1500:] if log_path.is_file() else ""
            message = f"TrialProcessError: the trial process exited with code {code} without finishing; see {log_path}"
            try:
                storage.set_trial_user_attr(_compat.trial_id(trial), "error", f"{message}. Last output:\n{tail}")
                storage.set_trial_state_values(_compat.trial_id(trial), optuna.trial.TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # it did finish, just now

    return execute
