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

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it. Imported on first use (PEP 562): the command line builds its parser
# (and reports usage errors) without loading Optuna, and nothing here loads torch or Lightning before a trial runs.
_LAZY_EXPORTS = {
    "Configuration": "lightning_gen.sweep.spec",
    "DEFAULT_STUDY_NAME": "lightning_gen.sweep.study",
    "JOURNAL_FILE": "lightning_gen.sweep.study",
    "SweepSettings": "lightning_gen.sweep.settings",
    "SweepSpec": "lightning_gen.sweep.spec",
    "SweepStudy": "lightning_gen.sweep.study",
    "TrialResult": "lightning_gen.sweep.report",
    "collect_results": "lightning_gen.sweep.report",
    "config_label": "lightning_gen.sweep.spec",
    "create_or_join": "lightning_gen.sweep.study",
    "current_version": "lightning_gen.sweep.study",
    "enqueue_reruns": "lightning_gen.sweep.study",
    "enqueue_retries": "lightning_gen.sweep.study",
    "in_process_executor": "lightning_gen.sweep.trial",
    "normalize_key": "lightning_gen.sweep.spec",
    "open_storage": "lightning_gen.sweep.study",
    "open_sweep": "lightning_gen.sweep.study",
    "parse_grid": "lightning_gen.sweep.spec",
    "parse_search": "lightning_gen.sweep.spec",
    "parse_seeds": "lightning_gen.sweep.spec",
    "recover_dead_trials": "lightning_gen.sweep.study",
    "run_trial": "lightning_gen.sweep.trial",
    "run_worker": "lightning_gen.sweep.study",
    "short_key": "lightning_gen.sweep.spec",
    "stale_trials": "lightning_gen.sweep.study",
    "subprocess_executor": "lightning_gen.sweep.trial",
    "write_report": "lightning_gen.sweep.report",
}

__all__ = sorted(_LAZY_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))
