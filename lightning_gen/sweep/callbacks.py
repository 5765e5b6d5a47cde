"""The per-trial callbacks every trial of a sweep shares, whatever drives it: the same budget, the same evaluations.

- :class:`GeneratorStepBudget` stops training after the same number of generator updates for every trial (a GAN with
  ``n_critic=5`` makes six optimizer steps per generator step, so ``max_steps`` would not be fair).
- :func:`metrics_callbacks` builds the metric callbacks with one fixed-latent schedule: every trial is evaluated at
  the same generator steps, on samples drawn from the same seeds.
- :class:`EvaluationRecorder` turns each evaluation into a record (every logged ``val/*`` value, the generator
  step, training time and images) and hands it to a ``report`` function (the sweep's trial reports it to Optuna,
  which may answer "prune").
- :class:`TrainTimer` times the training batches only, so images/s excludes evaluation.

Nothing here knows about Optuna or storage; :mod:`.trial` wires these into a trial.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from lightning_gen.sweep.settings import SweepSettings

__all__ = ["EvaluationRecorder", "GeneratorStepBudget", "TrainTimer", "generator_step", "metrics_callbacks"]

_NEVER = 10**12  # an every_n_steps that never fires: the end of training is evaluated separately


def generator_step(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
    """Generator updates so far (the library's modules count them; other modules fall back to ``global_step``)."""
    step = getattr(pl_module, "generator_step", None)
    return int(step) if step is not None else int(trainer.global_step)


def _load_object(spec: str) -> Any:
    import importlib

    module_name, sep, attribute = spec.partition(":")
    if not sep:
        raise ValueError(f"feature_extractor takes MODULE:FACTORY (a callable returning an nn.Module), got {spec!r}.")
    target = getattr(importlib.import_module(module_name), attribute)
    return target() if callable(target) and not isinstance(target, torch.nn.Module) else target


def metrics_callbacks(settings: SweepSettings) -> list[Callback]:
    """Fresh metric callbacks for one trial, all on the sweep's schedule and sample seeds."""
    every = settings.eval_every or _NEVER
    # What FID and the shapes metrics share, so both evaluate the same samples at the same generator steps.
    common = dict(
        every_n_steps=every,
        num_samples=settings.num_samples,
        num_real=settings.num_real,
        split=settings.split,
        batch_size=settings.metrics_batch_size,
        seed=settings.sample_seed,
        cache_dir=settings.cache_dir,
        progress=False,
    )
    callbacks: list[Callback] = []
    if "fid" in settings.metrics:
        from lightning_gen.metrics import FIDCallback

        extractor = _load_object(settings.feature_extractor) if settings.feature_extractor else None
        callbacks.append(
            FIDCallback(
                **common,
                kid=settings.kid,
                inception_score=settings.inception_score,
                weights=settings.weights,
                download=settings.download,
                feature_extractor=extractor,
                kid_subset_size=settings.resolved_kid_subset_size,
                kid_subsets=settings.kid_subsets,
                is_splits=settings.is_splits,
            )
        )
    if "shapes" in settings.metrics:
        from lightning_gen.metrics.shapes import ShapesMetricsCallback

        callbacks.append(ShapesMetricsCallback(**common))
    return callbacks


class GeneratorStepBudget(Callback):
    """Stop training once the module has made ``generator_steps`` generator updates (checked after every batch)."""

    def __init__(self, generator_steps: int | None) -> None:
        self.generator_steps = generator_steps

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.generator_steps is not None and generator_step(trainer, pl_module) >= self.generator_steps:
            trainer.should_stop = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)  # a trial resumed at its budget trains no further

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._check(trainer, pl_module)


class EvaluationRecorder(Callback):
    """Collects each evaluation of the metric callbacks, checkpoints after it, and passes it to ``report``.

    It must come after the metric callbacks in the trainer's list, so that in ``on_train_batch_end`` it sees the
    values logged for that batch. Its counters travel in the checkpoint, so timings add up across resumes.

    Args:
        metric_callbacks: The callbacks whose ``last_result`` changes when they evaluate.
        run_dir: The trial's folder (``checkpoints/last.ckpt`` is kept there).
        report: Called with the trainer and each record on every process; may raise (e.g. ``optuna.TrialPruned``)
            to stop the trial, which all processes of a multi-process trial must then do together.
    """

    CHECKPOINT = Path("checkpoints") / "last.ckpt"

    def __init__(
        self,
        metric_callbacks: list[Callback],
        run_dir: str | os.PathLike,
        report: Callable[[pl.Trainer, dict[str, Any]], None] | None = None,
    ) -> None:
        self.metric_callbacks = metric_callbacks
        self.run_dir = Path(run_dir)
        self.report = report
        self.records: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.train_images = 0
        self.wall_before = 0.0
        self.session_start = time.perf_counter()
        self.session_start_steps: list[int] = []
        self._seen: list[Any] = [None] * len(metric_callbacks)

    # -- state carried by checkpoints, so a resumed trial keeps its earlier evaluations and timings
    def state_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "train_seconds": self.train_seconds,
            "train_images": self.train_images,
            "wall_seconds": self.wall_seconds,
            "session_start_steps": self.session_start_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))
        self.train_images = int(state_dict.get("train_images", 0))
        self.wall_before = float(state_dict.get("wall_seconds", 0.0))
        self.session_start_steps = list(state_dict.get("session_start_steps", []))
        self.session_start = time.perf_counter()

    @property
    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.session_start

    @property
    def evaluated_steps(self) -> set[int]:
        return {record["generator_step"] for record in self.records}

    # -- hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.session_start_steps.append(generator_step(trainer, pl_module))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.collect(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save_checkpoint(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self.collect(trainer, pl_module)

    # -- helpers
    def collect(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any] | None:
        """Record the evaluation made since the last call, if any; checkpoint; report it."""
        results = [getattr(callback, "last_result", None) for callback in self.metric_callbacks]
        if all(result is None or result is seen for result, seen in zip(results, self._seen)):
            return None
        self._seen = results
        record: dict[str, Any] = {
            "generator_step": generator_step(trainer, pl_module),
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
        }
        # Every value a metric callback logged (val/fid, val/kid_std, val/fsd...), by its name without the prefix.
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val/"):
                number = float(value.item() if isinstance(value, torch.Tensor) else value)
                record[name[len("val/") :]] = number if math.isfinite(number) else None
        record.update(
            train_seconds=round(self.train_seconds, 3),
            train_images=self.train_images,
            wall_seconds=round(self.wall_seconds, 3),
        )
        self.records = [r for r in self.records if r["generator_step"] != record["generator_step"]] + [record]
        if trainer.state.fn == "fit":
            self.save_checkpoint(trainer)  # an interruption after an evaluation never has to redo it
        if self.report is not None:
            self.report(trainer, record)
        return record

    def save_checkpoint(self, trainer: pl.Trainer) -> None:
        path = self.run_dir / self.CHECKPOINT
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        trainer.save_checkpoint(temporary)  # every rank takes part; only rank 0 writes
        if trainer.is_global_zero:
            os.replace(temporary, path)  # a kill during the write leaves the previous checkpoint intact


class TrainTimer(Callback):
    """Times the training batches only. First in the callback list, so its batch end runs before any evaluation."""

    def __init__(self, recorder: EvaluationRecorder) -> None:
        self.recorder = recorder
        self._started: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        if self._started is not None:
            self.recorder.train_seconds += time.perf_counter() - self._started
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            if isinstance(images, torch.Tensor):
                self.recorder.train_images += int(images.shape[0]) * trainer.world_size
            self._started = None
