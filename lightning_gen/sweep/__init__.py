"""Sweeps: grids and searches over training configurations, as Optuna studies that any number of workers join.

A sweep is an Optuna study. ``--grid KEY=V1,V2`` enumerates configurations (configs x grid values); ``--search
KEY=LOW:HIGH[:log]`` with ``--trials N`` lets a sampler (TPE by default) choose them. Every configuration runs once
per seed, each run being one trial that trains through the ``lightning-gen fit`` code path in a process of its
own, under one shared budget (generator steps or epochs) and one fixed-latent evaluation schedule, and reports its
evaluations to the trial so a pruner can stop hopeless ones. The study lives in a storage (by default a journal
file in the output folder; any Optuna storage URL otherwise), so a rerun resumes, a failed trial keeps its error,
and workers on other processes or nodes join by running the same command.

Modules, by role:

- :mod:`.spec`: what to run (keys, grid, search space, seeds);
- :mod:`.settings`: what every trial shares (:class:`SweepSettings`: budget, schedule, metrics, objective);
- :mod:`.study`: the study (storage, creation and joining, handing out trials, dead and stale trials);
- :mod:`.trial`: running one trial (training, reporting, telling the study);
- :mod:`.callbacks`: the per-trial callbacks every trial shares (budget, evaluation records, timing);
- :mod:`.report`: ``results.csv``, ``results.md`` and the plots, from the study alone.

The command line is ``lightning-gen sweep`` (:mod:`lightning_gen.cli.sweep`). Not here: a job scheduler (start
workers with whatever launches processes: a shell, ``--workers N``, a SLURM array).

Example:
    >>> from lightning_gen.sweep import parse_grid
    >>> parse_grid(["model.loss=bce,hinge"])
    {'model.init_args.loss': ['bce', 'hinge']}
"""

from lightning_gen.sweep.report import TrialResult, collect_results, write_report
from lightning_gen.sweep.settings import SweepSettings
from lightning_gen.sweep.spec import (
    Configuration,
    SweepSpec,
    config_label,
    normalize_key,
    parse_grid,
    parse_search,
    parse_seeds,
    short_key,
)
from lightning_gen.sweep.study import (
    DEFAULT_STUDY_NAME,
    JOURNAL_FILE,
    SweepStudy,
    create_or_join,
    current_version,
    enqueue_reruns,
    enqueue_retries,
    open_storage,
    open_sweep,
    recover_dead_trials,
    run_worker,
    stale_trials,
)
from lightning_gen.sweep.trial import in_process_executor, run_trial, subprocess_executor

__all__ = [
    "Configuration",
    "DEFAULT_STUDY_NAME",
    "JOURNAL_FILE",
    "SweepSettings",
    "SweepSpec",
    "SweepStudy",
    "TrialResult",
    "collect_results",
    "config_label",
    "create_or_join",
    "current_version",
    "enqueue_reruns",
    "enqueue_retries",
    "in_process_executor",
    "normalize_key",
    "open_storage",
    "open_sweep",
    "parse_grid",
    "parse_search",
    "parse_seeds",
    "recover_dead_trials",
    "run_trial",
    "run_worker",
    "short_key",
    "stale_trials",
    "subprocess_executor",
    "write_report",
]
