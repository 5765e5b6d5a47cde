"""``lightning-gen sweep``: train and evaluate several configurations under one protocol, then tabulate and plot.

A sweep is a list of runs: each LightningCLI config (``--config``) crossed with a grid of overrides
(``--grid model.loss=bce,hinge``) and with seeds (``--seeds 0,1``). Every run gets the same budget (generator
steps or epochs), is evaluated by the same :class:`~lightning_gen.metrics.FIDCallback` (FID, IS and KID from one
set of samples, with the same latents for every run) at the same generator steps, and works in a folder of its
own named after its settings plus a hash of everything that determines its result. The sweep then writes
``results.csv`` (one row per run and evaluation point), ``results.md`` and PNG plots.

Reruns are cheap and safe: finished runs are skipped, interrupted runs resume from their last checkpoint, and a
run that raises (a non-finite loss raises ``FloatingPointError`` in the library's modules) is recorded as failed
with its error while the others go on.

Runs go one after another on one device, or one process per GPU with ``--devices``. Across nodes, start
``--shard i/n`` on each node over a shared file system and collect the tables with ``--report-only``.
``--eval-only`` evaluates checkpoints or zoo models without training.

What this module is not: a hyper-parameter optimiser (no search, no pruning of bad runs) nor a job scheduler.

Example:
    >>> from lightning_gen.sweep import expand_runs, parse_grid
    >>> grid = parse_grid(["model.loss=bce,hinge", "model.n_critic=1,2"])
    >>> grid
    {'model.init_args.loss': ['bce', 'hinge'], 'model.init_args.n_critic': ['1', '2']}
    >>> runs = expand_runs(["zoo/dcgan-shapes32/recipe.yaml"], grid, seeds=[0])  # doctest: +SKIP
    >>> [run.settings_text for run in runs]  # doctest: +SKIP
    ['loss=bce, n_critic=1', 'loss=bce, n_critic=2', 'loss=hinge, n_critic=1', 'loss=hinge, n_critic=2']
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import gc
import hashlib
import importlib
import inspect
import itertools
import json
import logging
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint
from torch import nn

__all__ = [
    "RunResult",
    "RunSpec",
    "SweepSettings",
    "evaluate_sources",
    "expand_runs",
    "load_results",
    "main",
    "parse_grid",
    "run_name",
    "run_sweep",
    "write_report",
]

RESULT_COLUMNS = (
    "run", "config", "settings", "seed", "status", "generator_step", "epoch", "global_step",
    "fid", "is", "is_std", "kid", "kid_std", "train_seconds", "train_images", "images_per_second",
    "wall_seconds", "parameters", "error",
)  # fmt: skip
RUN_FILE = "run.json"
EVALUATIONS_FILE = "evaluations.jsonl"
CHECKPOINT = Path("checkpoints") / "last.ckpt"
SAMPLES_FILE = "samples.png"
# Settings that only matter to training runs; evaluation-only runs leave them out of their folder hash.
_BUDGET_KEYS = ("generator_steps", "epochs", "eval_every")
# Stems that say nothing about a config, so its folder names it instead (zoo/<name>/recipe.yaml).
_GENERIC_STEMS = ("recipe", "config", "configs")


# ------------------------------------------------------------------------------------------------------ the grid


def normalize_key(key: str) -> str:
    """Turn a grid key into the LightningCLI key it overrides.

    ``model.loss`` and ``data.image_size`` are short for ``model.init_args.loss`` and ``data.init_args.image_size``
    (the configs select their classes with ``class_path``); other keys are kept.

    Example:
        >>> normalize_key("model.loss"), normalize_key("model.init_args.loss"), normalize_key("trainer.precision")
        ('model.init_args.loss', 'model.init_args.loss', 'trainer.precision')
    """
    key = key.strip().lstrip("-")
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise ValueError(f"Grid key {key!r} is not a dotted config key such as 'model.loss' or 'trainer.precision'.")
    if parts[0] == "seed_everything":
        raise ValueError("Set seeds with --seeds 0,1 (seeds=[0, 1] in Python), not with a grid over seed_everything.")
    if parts[0] in ("model", "data") and len(parts) > 1 and parts[1] not in ("class_path", "init_args", "dict_kwargs"):
        parts.insert(1, "init_args")
    return ".".join(parts)


def _short_key(key: str) -> str:
    # Model settings are what sweeps vary most; name them bare (loss=hinge), everything else with its section.
    parts = key.split(".")
    if parts[:2] == ["model", "init_args"]:
        return ".".join(parts[2:])
    if len(parts) > 1 and parts[1] == "init_args":
        return ".".join([parts[0], *parts[2:]])
    return key


def _split_values(text: str) -> list[str]:
    """Split ``a,b,c`` on commas outside brackets and quotes, so ``[0.5,0.9]`` stays one value."""
    values, current, depth, quote = [], [], 0, None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def parse_grid(entries: Sequence[str]) -> dict[str, list[str]]:
    """Parse ``KEY=V1,V2,...`` entries into ``{full key: [values]}``, in the order given.

    Values stay strings: LightningCLI parses them against the argument's type (``null`` is ``None``, ``[0.5,0.9]``
    a list). A key with one value is a fixed override for every run whose model or data class accepts it.

    Args:
        entries: Grid entries such as ``"model.loss=bce,hinge,wgan-gp"``.

    Raises:
        ValueError: An entry without ``=``, an empty value, or a key given twice.
    """
    grid: dict[str, list[str]] = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        if not sep:
            raise ValueError(f"Grid entry {entry!r} has no '='; write it as KEY=V1,V2, e.g. model.loss=bce,hinge.")
        full = normalize_key(key)
        values = _split_values(text)
        if any(value == "" for value in values):
            raise ValueError(f"Grid entry {entry!r} has an empty value; separate values with single commas.")
        if full in grid:
            raise ValueError(f"Grid key {key!r} is given twice; put all its values in one entry: {key}=a,b,c.")
        grid[full] = list(dict.fromkeys(values))  # duplicates would only repeat runs
    return grid


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-2"`` -> ``[0, 1, 2]``.

    Example:
        >>> parse_seeds("0-2,7")
        [0, 1, 2, 7]
    """
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            seeds.extend(range(int(match[1]), int(match[2]) + 1) if match else [int(part)])
        except ValueError:
            raise ValueError(f"Seeds must be non-negative integers like 0,1,2 or 0-4, got {text!r}.") from None
    return list(dict.fromkeys(seeds))


@dataclass(frozen=True)
class RunSpec:
    """What distinguishes one run of a sweep from the others.

    Attributes:
        config: Path of the LightningCLI config (for ``--eval-only``: the config the real data comes from).
        label: Short name of the config, shown in tables and plots.
        overrides: ``(full key, value)`` pairs applied on top of the config, in grid order.
        seed: ``seed_everything`` for this run; ``None`` keeps the config's.
        varied: Keys of ``overrides`` that take several values in the sweep (the "changed settings").
        source: For ``--eval-only`` runs, the checkpoint or zoo name evaluated; ``None`` for training runs.
    """

    config: str
    label: str
    overrides: tuple[tuple[str, str], ...] = ()
    seed: int | None = None
    varied: tuple[str, ...] = ()
    source: str | None = None

    @property
    def settings_text(self) -> str:
        """The changed settings, e.g. ``"loss=hinge, n_critic=2"`` (``"-"`` when none)."""
        shown = [f"{_short_key(key)}={value}" for key, value in self.overrides if key in self.varied]
        return ", ".join(shown) if shown else "-"

    @property
    def group(self) -> tuple[str, str]:
        """Runs that differ only in their seed share a group (one line in the plots)."""
        return (self.label, self.settings_text)

    def cli_args(self) -> list[str]:
        """Arguments that make LightningCLI build this run's model, data and trainer."""
        args = ["--config", self.config]
        args += [f"--{key}={value}" for key, value in self.overrides]
        if self.seed is not None:
            args.append(f"--seed_everything={self.seed}")
        return args


def config_label(config: str | os.PathLike) -> str:
    """Name a config by its file stem, or by its folder when the stem is generic (``zoo/dcgan-shapes32/recipe.yaml``).

    Example:
        >>> config_label("zoo/dcgan-shapes32/recipe.yaml"), config_label("configs/hinge.yaml")
        ('dcgan-shapes32', 'hinge')
    """
    path = Path(config)
    if path.stem.lower() in _GENERIC_STEMS and path.parent.name:
        return path.parent.name
    return path.stem


def _resolve_class(class_path: Any) -> type | None:
    if not isinstance(class_path, str):
        return None
    candidates = (
        [class_path] if "." in class_path else [f"lightning_gen.{class_path}", f"lightning_gen.data.{class_path}"]
    )
    for candidate in candidates:
        module_name, _, attribute = candidate.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError):
            continue
    return None


def _config_classes(config: str) -> dict[str, type | None]:
    import yaml

    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"Config {config!r} does not exist; pass LightningCLI configs with --config PATH.")
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise ValueError(f"Config {config!r} is not a LightningCLI config (a YAML mapping with model/data/trainer).")
    classes = {}
    for section in ("model", "data"):
        entry = content.get(section)
        classes[section] = _resolve_class(entry.get("class_path")) if isinstance(entry, dict) else None
    return classes


def _accepts(classes: dict[str, type | None], key: str) -> bool:
    """Whether a config's model or data class takes the argument a grid key sets (unknown classes take anything)."""
    parts = key.split(".")
    if parts[0] not in classes or len(parts) < 3 or parts[1] != "init_args":
        return True
    cls = classes[parts[0]]
    if cls is None:
        return True
    parameters = inspect.signature(cls.__init__).parameters
    return parts[2] in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def expand_runs(
    configs: Sequence[str | os.PathLike],
    grid: dict[str, Sequence[str]] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[RunSpec]:
    """Every run of a sweep: configs x grid x seeds, in that order.

    A grid key applies to the configs whose model (or data) class takes that argument, so one sweep can cross
    GAN settings such as ``n_critic`` and still include a VAE, which then runs once per seed with its config's
    values. A key that no config takes is an error (a typo would otherwise be silently ignored).

    Args:
        configs: LightningCLI config files; each is an alternative, not a layer.
        grid: ``{key: values}`` as returned by :func:`parse_grid` (short keys are accepted too).
        seeds: ``seed_everything`` values; ``None`` keeps each config's own seed.

    Returns:
        The runs, without duplicates.

    Raises:
        ValueError: No config, or a grid key no config accepts.
        FileNotFoundError: A config does not exist.
    """
    if not configs:
        raise ValueError("A sweep needs at least one LightningCLI config (--config PATH).")
    grid = {normalize_key(key): [str(v) for v in values] for key, values in (grid or {}).items()}
    for key, values in grid.items():
        if not values:
            raise ValueError(f"Grid key {key!r} has no values.")
    varied = tuple(key for key, values in grid.items() if len(values) > 1)
    seed_list: list[int | None] = list(seeds) if seeds else [None]
    classes = {str(config): _config_classes(str(config)) for config in configs}
    for key in grid:
        if not any(_accepts(found, key) for found in classes.values()):
            names = sorted({cls.__name__ for found in classes.values() for cls in found.values() if cls is not None})
            raise ValueError(
                f"No config's model or data class takes the grid key {key!r} (classes: {', '.join(names)}). Check "
                f"the spelling against `lightning-gen fit --config CONFIG --print_config`."
            )
    runs: list[RunSpec] = []
    for config in configs:
        keys = [key for key in grid if _accepts(classes[str(config)], key)]
        for values in itertools.product(*(grid[key] for key in keys)):
            for seed in seed_list:
                runs.append(
                    RunSpec(
                        config=str(config),
                        label=config_label(config),
                        overrides=tuple(zip(keys, values)),
                        seed=seed,
                        varied=tuple(key for key in varied if key in keys),
                    )
                )
    return list(dict.fromkeys(runs))


# -------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SweepSettings:
    """What every run shares: the budget, the evaluation schedule and the metric protocol.

    Args:
        generator_steps: Train each run for this many generator updates (``GANModule.generator_step``; Lightning's
            ``global_step`` counts every optimizer's steps, so it is not used). Exclusive with ``epochs``.
        epochs: Train each run for this many epochs instead.
        eval_every: Evaluate every N generator steps; the end of training is always evaluated. ``None``: only
            at the end.
        num_samples: Generated images per evaluation (batch ``b`` is ``sample(size, seed=sample_seed + b)``, the
            same latents for every run and evaluation).
        num_real: Real images from ``split`` (default: all); their statistics are computed once and cached.
        split: Data module split the real images come from.
        metrics_batch_size: Images per generation and feature-extraction batch.
        sample_seed: Base seed of the evaluation samples.
        inception_score: Also compute IS.
        kid: Also compute KID.
        kid_subset_size: KID subset size (default: min(1000, num_samples, num_real)).
        kid_subsets: KID subsets.
        is_splits: IS splits.
        weights: FID Inception weights file (else ``$LIGHTNING_GEN_INCEPTION_WEIGHTS``, the torch hub cache, then a
            download when ``download``).
        download: Whether missing Inception weights may be downloaded.
        cache_dir: Real-statistics cache (default: the metrics' default cache).
        accelerator: Trainer accelerator for every run (default: each config's).
        devices: Trainer ``devices`` for every run. A sweep trains each run on one device; use ``--devices`` on
            the command line for one process per GPU.
    """

    generator_steps: int | None = None
    epochs: int | None = None
    eval_every: int | None = None
    num_samples: int = 1000
    num_real: int | None = None
    split: str = "train"
    metrics_batch_size: int = 64
    sample_seed: int = 0
    inception_score: bool = True
    kid: bool = True
    kid_subset_size: int | None = None
    kid_subsets: int = 100
    is_splits: int = 10
    weights: str | None = None
    download: bool = True
    cache_dir: str | None = None
    accelerator: str | None = None
    devices: Any = 1

    def __post_init__(self) -> None:
        if (self.generator_steps is None) == (self.epochs is None):
            raise ValueError(
                f"Give exactly one shared budget: generator_steps ({self.generator_steps}) or epochs ({self.epochs}) "
                f"(--generator-steps N or --epochs N)."
            )
        for name in ("generator_steps", "epochs", "eval_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")
        if self.num_samples < 2 or (self.num_real is not None and self.num_real < 2):
            raise ValueError(
                f"num_samples and num_real need at least 2 images, got {self.num_samples}, {self.num_real}."
            )
        if self.inception_score and self.num_samples < self.is_splits:
            raise ValueError(f"num_samples={self.num_samples} is below is_splits={self.is_splits}; lower is_splits.")

    @property
    def resolved_kid_subset_size(self) -> int:
        """The KID subset size in use: the given one, else the standard 1000 capped by the sample counts."""
        if self.kid_subset_size is not None:
            return self.kid_subset_size
        return min(1000, self.num_samples, self.num_real or self.num_samples)

    def identity(self) -> dict[str, Any]:
        """Everything here that changes a run's numbers (what its folder hash covers)."""
        keep = (
            "generator_steps", "epochs", "eval_every", "num_samples", "num_real", "split", "metrics_batch_size",
            "sample_seed", "inception_score", "kid", "kid_subsets", "is_splits",
        )  # fmt: skip
        return {**{name: getattr(self, name) for name in keep}, "kid_subset_size": self.resolved_kid_subset_size}

    def metrics_callback(self, feature_extractor: nn.Module | None = None) -> Any:
        """A fresh :class:`~lightning_gen.metrics.FIDCallback` configured with this protocol (one per run)."""
        from lightning_gen.metrics import FIDCallback

        return FIDCallback(
            kid=self.kid,
            inception_score=self.inception_score,
            every_n_steps=self.eval_every or 10**12,  # the end of training is evaluated separately
            num_samples=self.num_samples,
            num_real=self.num_real,
            split=self.split,
            batch_size=self.metrics_batch_size,
            seed=self.sample_seed,
            weights=self.weights,
            download=self.download,
            feature_extractor=feature_extractor,
            cache_dir=self.cache_dir,
            kid_subset_size=self.resolved_kid_subset_size,
            kid_subsets=self.kid_subsets,
            is_splits=self.is_splits,
            progress=False,
        )


def extractor_identity(settings: SweepSettings, feature_extractor: nn.Module | None = None) -> dict[str, str]:
    """Name and sha256 of the feature extractor the sweep uses, resolving the Inception weights now (fail fast).

    Raises:
        MissingInceptionWeightsError: The Inception weights are not available (the message says where to put them).
    """
    from lightning_gen.metrics import FeatureExtractor, resolve_inception_weights
    from lightning_gen.metrics.inception import file_sha256

    if feature_extractor is not None:
        wrapped = FeatureExtractor.custom(feature_extractor)
        return {"name": wrapped.name, "sha256": wrapped.fingerprint}
    path = resolve_inception_weights(settings.weights, download=settings.download)
    return {"name": "inception-v3-compat", "sha256": file_sha256(path)}


def _file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _slug(text: str, limit: int = 80) -> str:
    text = re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")
    return text[:limit].rstrip("_") or "run"


def run_name(spec: RunSpec, settings: SweepSettings, extractor: dict[str, str]) -> str:
    """Folder name of a run: readable settings plus a hash of everything that determines its result.

    The hash covers the config file's content, the overrides, the seed, the evaluation source, the shared settings
    and the extractor's weights, so changing any of them starts a new run instead of resuming an incomparable one.
    """
    identity = {
        "config_sha256": _file_sha256(spec.config),
        "overrides": [list(pair) for pair in spec.overrides],
        "seed": spec.seed,
        "source": spec.source,
        "settings": {k: v for k, v in settings.identity().items() if spec.source is None or k not in _BUDGET_KEYS},
        "extractor": extractor["sha256"],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    readable = [spec.label] + [f"{_short_key(k)}={v}" for k, v in spec.overrides if k in spec.varied]
    if spec.seed is not None:
        readable.append(f"seed{spec.seed}")
    prefix = "eval_" if spec.source is not None else ""
    return f"{prefix}{_slug('_'.join(readable))}-{digest}"


# ---------------------------------------------------------------------------------------------- run results


@dataclass
class RunResult:
    """A run's status and evaluations, as read back from its folder.

    Attributes:
        spec: The run.
        name: Its folder name.
        status: ``"finished"``, ``"failed"``, ``"interrupted"`` (started and not finished: stopped and resumable, or
            still running in another process) or ``"pending"``.
        evaluations: One dict per evaluation point, in generator-step order (``generator_step``, ``fid``, ``is``,
            ``is_std``, ``kid``, ``kid_std``, ``train_seconds``, ``train_images``, ``wall_seconds``, ``protocol``...).
        error: ``"ExceptionType: message"`` of a failed run.
        info: The rest of ``run.json`` (parameters, timings, session start steps).
    """

    spec: RunSpec
    name: str
    status: str = "pending"
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def _values(self, metric: str) -> list[tuple[int | None, float]]:
        return [(e.get("generator_step"), e[metric]) for e in self.evaluations if _finite(e.get(metric))]

    @property
    def best_fid(self) -> tuple[int | None, float] | None:
        """``(generator step, FID)`` of the lowest FID, or ``None``."""
        values = self._values("fid")
        return min(values, key=lambda pair: pair[1]) if values else None

    @property
    def final(self) -> dict[str, Any] | None:
        """The last evaluation, or ``None``."""
        return self.evaluations[-1] if self.evaluations else None

    @property
    def images_per_second(self) -> float | None:
        """Training throughput (real images per second of training, evaluation time excluded)."""
        seconds, images = self.info.get("train_seconds"), self.info.get("train_images")
        return images / seconds if seconds and images else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Write-then-rename: a sweep killed mid-write must not leave a run.json that the rerun cannot read.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(temporary, path)


def _read_evaluations(run_dir: Path) -> list[dict[str, Any]]:
    """Evaluations by generator step; a step evaluated twice (a resumed run redoing it) keeps its latest record."""
    path = run_dir / EVALUATIONS_FILE
    if not path.is_file():
        return []
    by_step: dict[Any, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            by_step[record.get("generator_step")] = record
    return sorted(by_step.values(), key=lambda r: -1 if r.get("generator_step") is None else r["generator_step"])


def load_result(spec: RunSpec, run_dir: Path) -> RunResult:
    """Read a run's state back from its folder."""
    info = _read_json(run_dir / RUN_FILE)
    status = info.get("status", "pending")
    if status == "running":  # nothing is running now: that process was stopped
        status = "interrupted"
    return RunResult(
        spec=spec, name=run_dir.name, status=status, evaluations=_read_evaluations(run_dir),
        error=info.get("error"), info=info,
    )  # fmt: skip


def load_results(
    runs: Sequence[RunSpec], settings: SweepSettings, runs_dir: str | os.PathLike, extractor: dict[str, str]
) -> list[RunResult]:
    """The current state of every run of a sweep (what ``--report-only`` tabulates)."""
    return [load_result(spec, Path(runs_dir) / run_name(spec, settings, extractor)) for spec in runs]


# ------------------------------------------------------------------------------------------- training a run


class _SweepRecorder(Callback):
    """Records each evaluation of the metrics callback, checkpoints, enforces a generator-step budget, and times.

    It must come after the metrics callback in the trainer's list, so that in ``on_train_batch_end`` it sees the
    evaluation made for that batch. Its counters travel in the checkpoint, so timings add up across resumes.
    """

    def __init__(self, metrics_callback: Any, run_dir: Path, generator_steps: int | None, info: dict[str, Any]) -> None:
        self.metrics_callback = metrics_callback
        self.run_dir = run_dir
        self.generator_steps = generator_steps
        self.info = info  # run.json, updated as sessions start
        self.train_seconds = 0.0
        self.train_images = 0
        self.wall_before = 0.0
        self.session_start = time.perf_counter()
        self.evaluated_steps: set[int] = set()
        self._seen_result: Any = None

    # -- state carried by checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "train_seconds": self.train_seconds,
            "train_images": self.train_images,
            "wall_seconds": self.wall_seconds,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))
        self.train_images = int(state_dict.get("train_images", 0))
        self.wall_before = float(state_dict.get("wall_seconds", 0.0))
        self.session_start = time.perf_counter()

    @property
    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.session_start

    # -- hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = _generator_step(trainer, pl_module)
        # Written now rather than at the end, so that a resumed run shows where each session picked up.
        self.info["session_start_steps"] = [*self.info.get("session_start_steps", []), step]
        _write_json(self.run_dir / RUN_FILE, self.info)
        self._check_budget(trainer, step)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._collect(trainer, pl_module):
            self.save_checkpoint(trainer)  # an interruption after an evaluation never has to redo it
        self._check_budget(trainer, _generator_step(trainer, pl_module))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save_checkpoint(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._collect(trainer, pl_module)

    # -- helpers
    def _check_budget(self, trainer: pl.Trainer, step: int) -> None:
        if self.generator_steps is not None and step >= self.generator_steps:
            trainer.should_stop = True

    def _collect(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        result = self.metrics_callback.last_result
        if result is None or result is self._seen_result:
            return False
        self._seen_result = result
        step = _generator_step(trainer, pl_module)
        record = {
            "generator_step": step,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "fid": result.fid,
            "is": result.inception_score,
            "is_std": result.inception_score_std,
            "kid": result.kid,
            "kid_std": result.kid_std,
            "train_seconds": round(self.train_seconds, 3),
            "train_images": self.train_images,
            "wall_seconds": round(self.wall_seconds, 3),
            "protocol": result.protocol.to_dict(),
        }
        with open(self.run_dir / EVALUATIONS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.evaluated_steps.add(step)
        return True

    def save_checkpoint(self, trainer: pl.Trainer) -> None:
        path = self.run_dir / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        trainer.save_checkpoint(temporary)
        os.replace(temporary, path)  # a kill during the write leaves the previous checkpoint intact


class _TrainTimer(Callback):
    """Times the training batches only. First in the callback list, so its batch end runs before any evaluation."""

    def __init__(self, recorder: _SweepRecorder) -> None:
        self.recorder = recorder
        self._started: float | None = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._started is not None:
            self.recorder.train_seconds += time.perf_counter() - self._started
            self.recorder.train_images += _batch_size(batch)
            self._started = None


def _generator_step(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
    # global_step counts every optimizer's steps (n_critic + 1 per GAN batch); the modules count generator updates.
    step = getattr(pl_module, "generator_step", None)
    return int(step) if step is not None else int(trainer.global_step)


def _batch_size(batch: Any) -> int:
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(images.shape[0]) if isinstance(images, torch.Tensor) else 0


def _trainer_overrides(settings: SweepSettings, run_dir: Path, progress: bool) -> dict[str, Any]:
    from lightning.pytorch.loggers import CSVLogger

    overrides: dict[str, Any] = {
        "default_root_dir": str(run_dir),
        # One logger layout for every run (logs/version_N per session), whatever the configs say, so runs never
        # write into each other's folders.
        "logger": CSVLogger(save_dir=str(run_dir), name="logs"),
        # Several devices in one run would make the trainer relaunch the whole sweep per process.
        "devices": settings.devices,
        "num_nodes": 1,
        "max_steps": -1,
        "max_epochs": settings.epochs if settings.epochs is not None else -1,
        "enable_progress_bar": progress,
        "enable_model_summary": False,
    }
    if settings.accelerator is not None:
        overrides["accelerator"] = settings.accelerator
    return overrides


def _count_parameters(module: nn.Module) -> int:
    # Trainable parameters: the EMA copy of a generator is bookkeeping, not model size.
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _build_cli(spec: RunSpec) -> Any:
    from lightning_gen.cli import run_lightning_cli

    with warnings.catch_warnings():
        # The CLI is handed its arguments while sys.argv holds the sweep's own, which is intended here; and the
        # trainer it builds from the config is replaced by the sweep's, so its logger choice does not matter.
        warnings.filterwarnings("ignore", ".*LightningCLI's args parameter is intended.*")
        warnings.filterwarnings("ignore", ".*tensorboardX.*")
        return run_lightning_cli(spec.cli_args(), run=False)


def _configured_callbacks(cli: Any) -> list[Callback]:
    """The callbacks the config itself lists, instantiated.

    Building the CLI's own trainer appended Lightning's defaults (progress bar, model summary, config saver) to that
    same list; the sweep's trainer adds its own, so only the leading entries the config declares are kept.
    """
    declared = cli.config.get("trainer.callbacks") or []
    instantiated = cli.config_init.get("trainer.callbacks") or []
    if not isinstance(instantiated, list):
        return [instantiated]
    return list(instantiated[: len(declared) if isinstance(declared, list) else 1])


def _train_one(
    spec: RunSpec,
    settings: SweepSettings,
    run_dir: Path,
    info: dict[str, Any],
    feature_extractor: nn.Module | None,
    lightning_progress: bool,
) -> None:
    from lightning_gen._images import save_grid

    cli = _build_cli(spec)
    model, datamodule = cli.model, cli.datamodule
    info["parameters"] = _count_parameters(model)
    info["seed"] = cli.config.get("seed_everything")
    _write_json(run_dir / RUN_FILE, info)

    metrics = settings.metrics_callback(feature_extractor)
    recorder = _SweepRecorder(metrics, run_dir, settings.generator_steps, info)
    configured = _configured_callbacks(cli)
    overrides = _trainer_overrides(settings, run_dir, lightning_progress)
    if not any(isinstance(callback, Checkpoint) for callback in configured):
        # The sweep keeps its own checkpoints/last.ckpt; Lightning's default one would only duplicate it.
        overrides["enable_checkpointing"] = False
    trainer = cli.instantiate_trainer(**overrides, callbacks=[_TrainTimer(recorder), *configured, metrics, recorder])
    checkpoint = run_dir / CHECKPOINT
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint.is_file() else None)
    final_step = _generator_step(trainer, model)
    if final_step not in recorder.evaluated_steps:
        # Evaluate the end of training when the schedule did not land on it (the metrics callback always evaluates
        # under trainer.validate); the timing excludes this, as it excludes every evaluation.
        trainer.validate(model, datamodule=datamodule, verbose=False)
        if final_step not in recorder.evaluated_steps:
            raise RuntimeError(
                f"The final evaluation at generator step {final_step} did not run: the data module has no validation "
                f"data for trainer.validate(). Set eval_every to a divisor of the budget (--eval-every) or give the "
                f"data module a validation split."
            )
    recorder.save_checkpoint(trainer)
    save_grid(model.sample(64, seed=settings.sample_seed), run_dir / SAMPLES_FILE)
    info.update(
        train_seconds=round(recorder.train_seconds, 3),
        train_images=recorder.train_images,
        wall_seconds=round(recorder.wall_seconds, 3),
        generator_steps=final_step,
    )


def _evaluate_one(
    spec: RunSpec,
    settings: SweepSettings,
    run_dir: Path,
    info: dict[str, Any],
    feature_extractor: nn.Module | None,
    lightning_progress: bool,
) -> None:
    from lightning.pytorch.loggers import CSVLogger

    from lightning_gen._images import save_grid
    from lightning_gen.sampling import load_generative_module

    started = time.perf_counter()
    datamodule = _build_cli(spec).datamodule
    module = load_generative_module(spec.source)
    info["parameters"] = _count_parameters(module)
    metrics = settings.metrics_callback(feature_extractor)
    recorder = _SweepRecorder(metrics, run_dir, None, info)
    trainer = pl.Trainer(
        accelerator=settings.accelerator or "auto", devices=settings.devices,
        logger=CSVLogger(str(run_dir), name="logs"),
        callbacks=[metrics, recorder], enable_checkpointing=False, enable_progress_bar=lightning_progress,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.validate(module, datamodule=datamodule, verbose=False)
    if not recorder.evaluated_steps:
        raise RuntimeError(
            f"{spec.source} was not evaluated: the data module of {spec.config} has no validation data, which "
            f"trainer.validate() needs to run the metrics callback. Give it a validation split."
        )
    save_grid(module.sample(64, seed=settings.sample_seed), run_dir / SAMPLES_FILE)
    info["wall_seconds"] = round(time.perf_counter() - started, 3)


def _execute(
    spec: RunSpec, settings: SweepSettings, run_dir: Path, feature_extractor: nn.Module | None, lightning_progress: bool
) -> RunResult:
    """Run (or resume) one run; any exception marks it failed instead of propagating."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").unlink(missing_ok=True)  # from an earlier failed attempt being retried
    info = _read_json(run_dir / RUN_FILE)
    info.update(
        name=run_dir.name,
        spec={**asdict(spec), "overrides": [list(pair) for pair in spec.overrides]},
        settings=settings.identity(),
        status="running",
        error=None,
        sessions=int(info.get("sessions", 0)) + 1,
        started=info.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    _write_json(run_dir / RUN_FILE, info)
    action = _evaluate_one if spec.source is not None else _train_one
    try:
        action(spec, settings, run_dir, info, feature_extractor, lightning_progress)
    except Exception as error:  # noqa: BLE001 - isolating any failure of one run is the point
        info.update(status="failed", error=f"{type(error).__name__}: {error}".strip())
        (run_dir / "error.txt").write_text(traceback.format_exc())
    else:
        info.update(status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    _write_json(run_dir / RUN_FILE, info)
    return load_result(spec, run_dir)


class _QuietLightning:
    """Silence Lightning's per-run info lines (device banners, tips) that would bury the sweep's progress bar."""

    def __enter__(self) -> None:
        self._levels = {}
        for name in ("lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.WARNING)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        # Expected in every sweep run; the first one says it all.
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*resuming from a checkpoint that ended before the epoch ended.*")
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")

    def __exit__(self, *exc: Any) -> None:
        self._warnings.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)


def run_sweep(
    runs: Sequence[RunSpec],
    settings: SweepSettings,
    runs_dir: str | os.PathLike,
    *,
    feature_extractor: nn.Module | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    lightning_progress: bool = False,
    quiet: bool = True,
) -> list[RunResult]:
    """Train and evaluate every run that is not done yet, one after another, and return every run's result.

    Finished runs are skipped; interrupted ones resume from ``checkpoints/last.ckpt``; failed ones are skipped
    unless ``retry_failed``. A run that raises is recorded as failed (``run.json`` has the error, ``error.txt`` the
    traceback) and the sweep goes on. Ctrl+C or SIGTERM stop the sweep and leave the current run resumable from its
    last checkpoint (taken after every evaluation and at every epoch end).

    Args:
        runs: From :func:`expand_runs` (or ``RunSpec(..., source=...)`` to evaluate without training).
        settings: The shared budget and protocol.
        runs_dir: Parent folder of the run folders.
        feature_extractor: A custom feature network (uint8 images -> features) instead of Inception. Non-standard:
            values are not comparable with published ones.
        retry_failed: Run failed runs again.
        progress: Show a progress bar of runs done and left.
        lightning_progress: Also show Lightning's per-run progress bar.
        quiet: Silence Lightning's per-run info messages.

    Returns:
        One :class:`RunResult` per run, in the order of ``runs``.

    Raises:
        MissingInceptionWeightsError: Before any run, when the Inception weights cannot be found.
    """
    from tqdm.auto import tqdm

    runs_dir = Path(runs_dir)
    extractor = extractor_identity(settings, feature_extractor)
    names = [run_name(spec, settings, extractor) for spec in runs]
    results = [load_result(spec, runs_dir / name) for spec, name in zip(runs, names)]
    done = {"finished"} | ({"failed"} if not retry_failed else set())
    todo = [i for i, result in enumerate(results) if result.status not in done]
    bar = tqdm(
        total=len(runs), initial=len(runs) - len(todo), desc="sweep", unit="run", disable=not progress, file=sys.stderr
    )
    try:
        with _QuietLightning() if quiet else contextlib.nullcontext():
            for index in todo:
                spec, run_dir = runs[index], runs_dir / names[index]
                bar.set_postfix_str(run_dir.name, refresh=True)
                results[index] = _execute(spec, settings, run_dir, feature_extractor, lightning_progress)
                bar.update(1)
                if progress:
                    bar.write(_summary_line(results[index]), file=sys.stderr)
                gc.collect()
    finally:
        bar.close()
    return results


def _summary_line(result: RunResult) -> str:
    if result.status != "finished":
        return f"{result.name}: {result.status.upper()} {result.error or ''}".rstrip()
    best = result.best_fid
    fid = f"best FID {best[1]:.2f} at step {best[0]}" if best else "no FID"
    return f"{result.name}: {fid}, {result.info.get('wall_seconds', 0):.0f}s"


def evaluate_sources(
    sources: Sequence[str],
    data_config: str | os.PathLike,
    settings: SweepSettings,
    runs_dir: str | os.PathLike,
    **kwargs: Any,
) -> list[RunResult]:
    """Evaluate checkpoints or zoo models without training, with the sweep's protocol and the data of ``data_config``.

    Args:
        sources: ``.ckpt`` files, zoo names, Hub ids or ``save_pretrained`` folders
            (see :func:`lightning_gen.sampling.load_generative_module`).
        data_config: A LightningCLI config whose ``data`` section gives the real images (its model is not used).
        settings: The protocol (the budget fields are ignored).
        runs_dir: Parent folder of the evaluation folders.
        **kwargs: Passed to :func:`run_sweep`.
    """
    return run_sweep(_eval_specs(sources, data_config), settings, runs_dir, **kwargs)


def _eval_specs(sources: Sequence[str], data_config: str | os.PathLike) -> list[RunSpec]:
    _config_classes(str(data_config))  # a missing config fails here, not once per source
    specs = []
    for source in sources:
        path = Path(source)
        label = path.parent.parent.name if path.suffix == ".ckpt" and path.parent.name == "checkpoints" else path.stem
        specs.append(RunSpec(config=str(data_config), label=label or str(source), source=str(source)))
    return specs


# -------------------------------------------------------------------------------------------------- reporting


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "-"


def _duration(seconds: Any) -> str:
    if not _finite(seconds):
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _csv_rows(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        base = {
            "run": result.name,
            "config": result.spec.source or result.spec.label,
            "settings": result.spec.settings_text,
            "seed": result.spec.seed if result.spec.seed is not None else result.info.get("seed"),
            "status": result.status,
            "parameters": result.info.get("parameters"),
            "error": result.error or "",
        }
        for evaluation in result.evaluations or [{}]:
            seconds, images = evaluation.get("train_seconds"), evaluation.get("train_images")
            row = {**base, **{key: evaluation.get(key) for key in RESULT_COLUMNS if key in evaluation}}
            row["images_per_second"] = round(images / seconds, 2) if seconds and images else None
            rows.append(row)
    return rows


def _protocol_summary(results: Sequence[RunResult]) -> tuple[list[str], dict[str, Any] | None]:
    protocols = [e["protocol"] for r in results for e in r.evaluations if e.get("protocol")]
    if not protocols:
        return ["No run has been evaluated yet."], None
    protocol = protocols[0]
    lines = []
    extractors = {(p["extractor"], p["weights_sha256"]) for p in protocols}
    if len(extractors) > 1:
        lines.append(f"**Warning:** runs were evaluated with different extractors: {sorted(extractors)}.")
    fingerprints = {p.get("real_fingerprint") for p in protocols}
    if len(fingerprints) > 1:
        lines.append("**Warning:** runs compare against different real data (their data fingerprints differ).")
    return lines, protocol


def _comparability(protocol: dict[str, Any]) -> str:
    from lightning_gen.metrics.inception import INCEPTION_NAME, INCEPTION_WEIGHTS_FILENAME, OFFICIAL_WEIGHTS_SHA256_PREFIX

    sha = protocol["weights_sha256"]
    # Check the hash here too: records written before the protocol checked it called any Inception file standard.
    if not protocol.get("standard") or not sha.startswith(OFFICIAL_WEIGHTS_SHA256_PREFIX):
        if protocol["extractor"] == INCEPTION_NAME:
            return (
                f"**These values are not comparable with published FIDs**: the extractor is the FID Inception-v3 "
                f"architecture (`{protocol['extractor']}`) but its weights file (sha256 `{sha}`) is not the official "
                f"`{INCEPTION_WEIGHTS_FILENAME}`. They rank the runs of this table against each other and nothing more."
            )
        return (
            f"**These values are not comparable with published FIDs**: the features come from a custom extractor "
            f"(`{protocol['extractor']}`, state sha256 `{sha[:16]}...`), not the FID Inception network. Compare "
            f"them only within this table."
        )
    note = "The extractor is the standard FID Inception-v3 with the official weights"
    if protocol.get("n_fake", 0) < 50_000:
        note += (
            f", but FID from {protocol.get('n_fake')} samples is biased upward compared with the 50,000 papers use, "
            f"so compare these values only within this table"
        )
    return note + "."


def write_report(
    results: Sequence[RunResult],
    out_dir: str | os.PathLike,
    settings: SweepSettings,
    *,
    command: str | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md`` and (with ``plots``) ``fid_vs_steps.png`` and ``best_fid.png``.

    Args:
        results: From :func:`run_sweep` or :func:`load_results`.
        out_dir: Folder for the files (created).
        settings: The shared settings, described in ``results.md``.
        command: The command line that produced the sweep, quoted in ``results.md``.
        plots: Draw the PNG plots (needs matplotlib: ``pip install 'lightning-gen[plot]'``).

    Returns:
        ``{"csv": ..., "md": ..., "fid_vs_steps": ..., "best_fid": ...}`` for the files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "results.csv", "md": out_dir / "results.md"}
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_csv_rows(results))
    if plots and any(r.evaluations for r in results):
        paths["fid_vs_steps"] = _plot_fid_vs_steps(results, out_dir / "fid_vs_steps.png")
        paths["best_fid"] = _plot_best_fid(results, out_dir / "best_fid.png")
    paths["md"].write_text(_markdown(results, settings, command, paths))
    return paths


def _markdown(
    results: Sequence[RunResult], settings: SweepSettings, command: str | None, paths: dict[str, Path]
) -> str:
    warnings_, protocol = _protocol_summary(results)
    lines = ["# FID sweep", ""]
    if command:
        lines += ["Produced by:", "", "```bash", command, "```", ""]
    if any(r.spec.source is None for r in results):
        budget = (
            f"{settings.generator_steps} generator steps" if settings.generator_steps else f"{settings.epochs} epochs"
        )
        schedule = (
            f"every {settings.eval_every} generator steps and at the end" if settings.eval_every else "at the end"
        )
        lines.append(
            f"**Budget and schedule.** Every run trains for {budget} and is evaluated {schedule}, on one device. "
            f"Images/s is training throughput (real images per second of training, evaluation excluded); wall time "
            f"includes evaluation."
        )
    else:
        lines.append("**Evaluation only.** Existing models were evaluated without training.")
    lines.append("")
    if protocol is not None:
        extras = []
        if protocol.get("is_splits"):
            extras.append(f"IS over {protocol['is_splits']} splits")
        if protocol.get("kid_subsets"):
            extras.append(f"KID over {protocol['kid_subsets']} subsets of {protocol['kid_subset_size']}")
        lines.append(
            f"**Metric protocol.** {protocol['n_fake']} generated images (seeds from {protocol.get('sample_seed')}, "
            f"the same latents for every run and evaluation) against {protocol.get('n_real')} real images of the "
            f"`{protocol.get('split')}` split; features from `{protocol['extractor']}` with weights sha256 "
            f"`{protocol['weights_sha256']}`, resize `{protocol['resize']}`, {protocol['quantization']} quantization"
            + (f", {', '.join(extras)}" if extras else "")
            + ". KID is shown x 10^3."
        )
        lines += ["", _comparability(protocol), ""]
    lines += warnings_ + ([""] if warnings_ else [])

    columns = [
        "run", "config", "changed settings", "seed", "status", "best FID (step)", "final FID", "final IS",
        "final KID x10^3", "images/s", "wall time", "parameters",
    ]  # fmt: skip
    header = "| " + " | ".join(columns) + " |"
    lines += ["## Runs", "", header, "|" + "---|" * len(columns)]
    for result in results:
        final = result.final or {}
        best = result.best_fid
        kid = final.get("kid")
        lines.append(
            "| " + " | ".join([
                f"`{result.name}`",
                result.spec.source or result.spec.label,
                result.spec.settings_text,
                str(result.spec.seed if result.spec.seed is not None else result.info.get("seed", "-")),
                result.status,
                f"{best[1]:.2f} ({best[0]})" if best else "-",
                _fmt(final.get("fid")),
                _fmt(final.get("is")),
                _fmt(kid * 1e3 if _finite(kid) else None),
                _fmt(result.images_per_second, 0),
                _duration(result.info.get("wall_seconds")),
                f"{result.info['parameters']:,}" if result.info.get("parameters") else "-",
            ]) + " |"
        )  # fmt: skip
    lines.append("")

    groups = _groups(results)
    if any(len(members) > 1 for members in groups.values()):
        lines += [
            "## Over seeds",
            "",
            "| config | changed settings | seeds finished | best FID mean +- std | final FID mean +- std |",
            "|---|---|---|---|---|",
        ]
        for (label, settings_text), members in groups.items():
            best = [r.best_fid[1] for r in members if r.best_fid]
            final = [r.final["fid"] for r in members if r.final and _finite(r.final.get("fid"))]
            finished = sum(r.status == "finished" for r in members)
            lines.append(
                f"| {label} | {settings_text} | {finished}/{len(members)} | {_mean_std(best)} | {_mean_std(final)} |"
            )
        lines.append("")

    if "fid_vs_steps" in paths:
        lines += [
            "## Plots",
            "",
            "![FID against generator steps](fid_vs_steps.png)",
            "",
            "![Best FID per configuration](best_fid.png)",
            "",
        ]
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{r.name}`: {r.error}" for r in failed] + [""]
    unfinished = [r for r in results if r.status in ("pending", "interrupted")]
    if unfinished:
        lines += [f"{len(unfinished)} run(s) not finished yet: rerun the same command to complete them.", ""]
    lines += [
        "Each run's folder holds `run.json`, `evaluations.jsonl` (with the full protocol), `checkpoints/last.ckpt`, "
        "`samples.png` and its Lightning logs.",
        "",
    ]
    return "\n".join(lines)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def _groups(results: Sequence[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for result in results:
        key = (result.spec.source or result.spec.label, result.spec.settings_text)
        groups.setdefault(key, []).append(result)
    return groups


def _group_name(key: tuple[str, str]) -> str:
    label, settings_text = key
    return label if settings_text == "-" else f"{label}: {settings_text}"


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Plotting the sweep needs matplotlib: pip install 'lightning-gen[plot]' (or pass --no-plots)."
        ) from error
    # A bare Figure renders with the Agg canvas on savefig, whatever pyplot backend the user has selected.
    return Figure(figsize=(width, height), layout="constrained")


def _plot_fid_vs_steps(results: Sequence[RunResult], path: Path) -> Path:
    colours = _group_colours(results)
    groups = {key: members for key, members in _groups(results).items() if any(r.evaluations for r in members)}
    figure = _figure(9, 5)
    axes = figure.subplots()
    for key, members in groups.items():
        colour = colours[key]
        by_step: dict[int, list[float]] = {}
        for result in members:
            for step, value in result._values("fid"):
                by_step.setdefault(step or 0, []).append(value)
        steps = sorted(by_step)
        means = [statistics.mean(by_step[s]) for s in steps]
        axes.plot(steps, means, marker="o", markersize=3, color=colour, label=_group_name(key))
        if len(members) > 1:  # seed spread
            axes.fill_between(
                steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps], color=colour, alpha=0.15
            )
    axes.set_xlabel("generator steps")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_ylabel("FID (lower is better)")
    axes.set_title(
        "FID against generator steps" + (" (mean over seeds, band: min-max)" if _several_seeds(results) else "")
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=110)
    return path


def _plot_best_fid(results: Sequence[RunResult], path: Path) -> Path:
    colours = _group_colours(results)
    groups = {key: [r.best_fid[1] for r in members if r.best_fid] for key, members in _groups(results).items()}
    groups = dict(sorted(((k, v) for k, v in groups.items() if v), key=lambda item: statistics.mean(item[1])))
    figure = _figure(8, 0.9 + 0.35 * len(groups))
    axes = figure.subplots()
    names = [_group_name(key) for key in groups]
    means = [statistics.mean(values) for values in groups.values()]
    errors = [statistics.stdev(values) if len(values) > 1 else 0.0 for values in groups.values()]
    positions = list(range(len(groups)))
    several = _several_seeds(results)
    bars = axes.barh(
        positions, means, xerr=errors if several else None, color=[colours[k] for k in groups], alpha=0.85, capsize=3
    )
    axes.bar_label(bars, labels=[_mean_std(values) for values in groups.values()], padding=4, fontsize="small")
    axes.margins(x=0.15)  # room for the labels
    if several:
        for position, values in zip(positions, groups.values()):
            axes.scatter(values, [position] * len(values), color="black", s=8, zorder=3)
    axes.set_yticks(positions, names, fontsize="small")
    axes.invert_yaxis()  # best at the top
    axes.set_xlabel("best FID over the evaluation points (lower is better)")
    axes.set_title("Best FID per configuration" + (" (mean, std over seeds; dots: seeds)" if several else ""))
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path, dpi=110)
    return path


def _several_seeds(results: Sequence[RunResult]) -> bool:
    return any(len(members) > 1 for members in _groups(results).values())


def _group_colours(results: Sequence[RunResult]) -> dict[tuple[str, str], Any]:
    """One colour per configuration, the same in every plot."""
    from matplotlib import colormaps

    keys = list(_groups(results))
    palette = colormaps["tab10" if len(keys) <= 10 else "tab20"]
    return {key: palette(i % palette.N) for i, key in enumerate(keys)}


# ---------------------------------------------------------------------------------------------- command line


def _parse_devices(text: str | None) -> list[int] | None:
    """``"2"`` -> the first two visible GPUs ``[0, 1]``; ``"0,3"`` -> those GPU indices."""
    if text is None:
        return None
    try:
        devices = [int(part) for part in text.split(",") if part.strip()] if "," in text else list(range(int(text)))
    except ValueError:
        raise ValueError(f"--devices takes a GPU count (2) or GPU indices (0,3), got {text!r}.") from None
    available = torch.cuda.device_count()
    if not devices or min(devices) < 0 or max(devices) >= available:
        raise ValueError(
            f"--devices {text} asks for GPUs {devices} but {available} are visible; pass a count up to {available} or "
            f"indices below it (or leave --devices out to run on the configs' device)."
        )
    return devices


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not int(match[1]) < int(match[2]):
        raise ValueError(f"--shard takes I/N with 0 <= I < N (this process runs runs I, I+N, ...), got {text!r}.")
    return int(match[1]), int(match[2])


def _load_object(spec: str) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep:
        raise ValueError(f"--feature-extractor takes MODULE:CALLABLE (a factory returning an nn.Module), got {spec!r}.")
    target = getattr(importlib.import_module(module_name), attribute)
    return target() if callable(target) and not isinstance(target, nn.Module) else target


def build_parser() -> argparse.ArgumentParser:
    """The ``lightning-gen sweep`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lightning-gen sweep",
        description=(
            "Train every combination of configs, grid values and seeds with one budget, evaluate FID / IS / KID at the "
            "same generator steps, and write results.csv, results.md and plots. Rerunning the same command skips "
            "finished runs and resumes interrupted ones."
        ),
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="LightningCLI config; repeat for several (each is an alternative)",
    )
    what.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="values to cross, e.g. model.loss=bce,hinge (short for model.init_args.loss); repeat for several "
        "keys; a key applies to the configs whose class takes it",
    )
    what.add_argument(
        "--seeds", default=None, help="seed_everything values, e.g. 0,1 or 0-4 (default: each config's own)"
    )
    what.add_argument(
        "--eval-only",
        nargs="+",
        default=None,
        metavar="SOURCE",
        help="evaluate these checkpoints or zoo models without training (real data from the first --config)",
    )
    budget = parser.add_argument_group("shared budget and evaluation schedule")
    exclusive = budget.add_mutually_exclusive_group()
    exclusive.add_argument("--generator-steps", type=int, default=None, help="train every run for N generator updates")
    exclusive.add_argument("--epochs", type=int, default=None, help="train every run for N epochs")
    budget.add_argument(
        "--eval-every", type=int, default=None, help="evaluate every N generator steps (the end is always evaluated)"
    )
    metrics = parser.add_argument_group("metric protocol")
    metrics.add_argument("--num-samples", type=int, default=1000, help="generated images per evaluation (default 1000)")
    metrics.add_argument("--num-real", type=int, default=None, help="real images (default: the whole split)")
    metrics.add_argument(
        "--split", default="train", choices=("train", "val"), help="split the real images come from (default train)"
    )
    metrics.add_argument(
        "--metrics-batch-size", type=int, default=64, help="images per generation/extraction batch (default 64)"
    )
    metrics.add_argument("--sample-seed", type=int, default=0, help="base seed of the evaluation samples (default 0)")
    metrics.add_argument(
        "--is",
        dest="inception_score",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Inception Score (default on)",
    )
    metrics.add_argument(
        "--kid", action=argparse.BooleanOptionalAction, default=True, help="Kernel Inception Distance (default on)"
    )
    metrics.add_argument(
        "--kid-subset-size", type=int, default=None, help="KID subset size (default min(1000, samples))"
    )
    metrics.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    metrics.add_argument("--is-splits", type=int, default=10, help="IS splits (default 10)")
    metrics.add_argument(
        "--weights",
        default=None,
        help="FID Inception weights file (default: $LIGHTNING_GEN_INCEPTION_WEIGHTS, torch hub cache, download)",
    )
    metrics.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading missing Inception weights"
    )
    metrics.add_argument(
        "--feature-extractor",
        default=None,
        metavar="MODULE:FACTORY",
        help="custom feature network instead of Inception (values not comparable with published ones)",
    )
    metrics.add_argument(
        "--cache-dir", default=None, help="real-statistics cache (default: $LIGHTNING_GEN_CACHE/metrics)"
    )
    where = parser.add_argument_group("outputs and execution")
    where.add_argument(
        "--out", default="runs/sweep", help="folder of results.csv, results.md and plots (default runs/sweep)"
    )
    where.add_argument("--runs-dir", default=None, help="folder of the run folders (default OUT/runs)")
    where.add_argument("--accelerator", default=None, help="trainer accelerator for every run (default: each config's)")
    where.add_argument("--devices", default=None, help="GPUs to use, one process each: a count (2) or indices (0,3)")
    where.add_argument(
        "--shard", default=None, metavar="I/N", help="run only runs I, I+N, ... and write no report (for several nodes)"
    )
    where.add_argument("--report-only", action="store_true", help="train nothing; tabulate the runs found so far")
    where.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    where.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    where.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    where.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    where.add_argument("--verbose", action="store_true", help="keep Lightning's per-run messages and progress bar")
    return parser


def _settings_from_args(args: argparse.Namespace) -> SweepSettings:
    eval_only = args.eval_only is not None
    return SweepSettings(
        # Evaluation-only sweeps train nothing; a nominal budget satisfies the settings' check.
        generator_steps=1 if eval_only else args.generator_steps,
        epochs=None if eval_only else args.epochs,
        eval_every=args.eval_every,
        num_samples=args.num_samples,
        num_real=args.num_real,
        split=args.split,
        metrics_batch_size=args.metrics_batch_size,
        sample_seed=args.sample_seed,
        inception_score=args.inception_score,
        kid=args.kid,
        kid_subset_size=args.kid_subset_size,
        kid_subsets=args.kid_subsets,
        is_splits=args.is_splits,
        weights=args.weights,
        download=not args.no_download,
        cache_dir=args.cache_dir,
        accelerator=args.accelerator,
    )


def _without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE`` (to hand the rest to per-device processes)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def _launch_per_device(
    argv: Sequence[str], devices: list[int], runs: Sequence[RunSpec], names: list[str], runs_dir: Path, progress: bool
) -> int:
    """One child process per GPU, each running every n-th run with only its GPU visible; the parent waits, counts."""
    from tqdm.auto import tqdm

    base = [sys.executable, "-m", "lightning_gen.cli", "sweep", *_without_option(argv, "--devices")]
    if not any(arg == "--accelerator" or arg.startswith("--accelerator=") for arg in argv):
        base += ["--accelerator", "gpu"]  # each process sees exactly one GPU through CUDA_VISIBLE_DEVICES
    runs_dir.mkdir(parents=True, exist_ok=True)
    children = []
    for index, device in enumerate(devices):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(device)}
        log_path = runs_dir / f"device{device}.log"
        command = [*base, "--shard", f"{index}/{len(devices)}", "--no-progress"]
        with open(log_path, "w") as log_file:
            children.append((subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT), log_path))
        print(f"device {device}: {shlex.join(command)} (log: {log_path})", file=sys.stderr)
    settled = ("finished", "failed")
    with tqdm(total=len(runs), desc="sweep", unit="run", disable=not progress, file=sys.stderr) as bar:
        while any(child.poll() is None for child, _ in children):
            time.sleep(5)
            bar.n = sum(_read_json(runs_dir / name / RUN_FILE).get("status") in settled for name in names)
            bar.refresh()
    codes = [child.returncode for child, _ in children]
    for (_, log_path), code in zip(children, codes):
        if code not in (0, 1):  # 1 only means that some run failed, which the report shows
            print(
                f"lightning-gen sweep: the process for one device exited with {code}; see {log_path}", file=sys.stderr
            )
    return max(codes)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen sweep``; returns 0 when every run finished, 1 when some failed, 2 on bad usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.config:
        parser.error(
            "give at least one --config (with --eval-only: the config whose data section gives the real images)"
        )
    if args.eval_only is not None and (args.grid or args.seeds or args.generator_steps or args.epochs):
        parser.error("--eval-only trains nothing: drop --grid, --seeds, --generator-steps and --epochs")
    if args.eval_only is None and args.generator_steps is None and args.epochs is None:
        # --report-only too: the budget is part of each run's folder name.
        parser.error("give the shared budget: --generator-steps N or --epochs N (the same as the sweep's)")
    try:
        settings = _settings_from_args(args)
        if args.eval_only is not None:
            runs = _eval_specs(args.eval_only, args.config[0])
        else:
            runs = expand_runs(args.config, parse_grid(args.grid), parse_seeds(args.seeds) if args.seeds else None)
        shard = _parse_shard(args.shard)
        devices = _parse_devices(args.devices)
        if shard is not None and devices is not None and len(devices) > 1:
            raise ValueError(
                f"--shard {args.shard} runs its share on one device; give it one GPU (--devices 0) or drop --shard and "
                f"let --devices {args.devices} start one process per GPU."
            )
        feature_extractor = _load_object(args.feature_extractor) if args.feature_extractor else None
        extractor = extractor_identity(settings, feature_extractor)
        if args.plots and not args.dry_run:
            _figure(1, 1)  # fail now, not after hours of training, when matplotlib is missing
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"lightning-gen sweep: error: {error}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    runs_dir = Path(args.runs_dir) if args.runs_dir else out_dir / "runs"
    names = [run_name(spec, settings, extractor) for spec in runs]
    if args.dry_run:
        for spec, name in zip(runs, names):
            status = load_result(spec, runs_dir / name).status
            print(f"{name}\t{spec.label}\t{spec.settings_text}\tseed={spec.seed}\t{status}")
        print(f"{len(runs)} runs in {runs_dir}")
        return 0

    # --report-only re-tabulates what the sweep command produced; the report names that command.
    command = "lightning-gen sweep " + shlex.join(arg for arg in argv if arg != "--report-only")
    mine = list(range(len(runs)))
    if shard is not None:
        mine = mine[shard[0] :: shard[1]]
    if not args.report_only:
        if devices is not None and len(devices) > 1 and shard is None:
            _launch_per_device(argv, devices, runs, names, runs_dir, args.progress)
        else:
            if devices is not None:
                settings = dataclasses.replace(settings, accelerator="gpu", devices=devices)
            run_sweep(
                [runs[i] for i in mine], settings, runs_dir, feature_extractor=feature_extractor,
                retry_failed=args.retry_failed, progress=args.progress, lightning_progress=args.verbose,
                quiet=not args.verbose,
            )  # fmt: skip
    results = load_results(runs, settings, runs_dir, extractor)
    if shard is not None and shard[1] > 1:
        print(
            f"shard {args.shard} done; when every shard has finished, rerun with --report-only instead of --shard.",
            file=sys.stderr,
        )
    else:
        paths = write_report(results, out_dir, settings, command=command, plots=args.plots)
        print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    relevant = [results[i] for i in mine]
    if any(r.status == "failed" for r in relevant):
        return 1
    return 0
