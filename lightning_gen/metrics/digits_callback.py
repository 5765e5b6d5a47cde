"""Digits FD, conditional accuracy, class coverage and validity during training: :class:`DigitsMetricsCallback`.

The numbers and their definitions are :mod:`lightning_gen.metrics.digits`'; this module only drives a
:class:`~lightning_gen.metrics.digits.DigitsEvaluator` from the training loop through
:class:`~lightning_gen.metrics.GenerativeMetricsCallback` (schedule, seeds, cache, DDP reduction), adding labels:
balanced labels for a conditional model's samples, the data module's labels (read as digits through its class
names) for the real side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from lightning_gen.data.digits import DIGIT_CLASSES
from lightning_gen.metrics.callbacks import GenerativeMetricsCallback
from lightning_gen.metrics.classifier_evaluation import reject_inception_arguments
from lightning_gen.metrics.digits import (
    BALANCED_LABELS,
    CLASS_MIN_SHARE,
    DigitsEvaluator,
    DigitsMetricResult,
    digit_of_label,
)
from lightning_gen.metrics.digits_classifier import (
    DIGITS_CLASSIFIER_SHA256,
    DIGITS_VALIDITY_THRESHOLD,
    digits_feature_network,
)

__all__ = ["DigitsMetricsCallback"]


class DigitsMetricsCallback(GenerativeMetricsCallback):
    """Log digits FD, conditional accuracy, class coverage and validity of the generator's samples during training.

    Logged (with ``prefix``, default ``val/``): ``digits_fd`` (on the progress bar), ``class_tv``,
    ``class_coverage``, ``validity``, ``conditional_accuracy`` (conditional models), ``real_accuracy`` (labelled
    real digits) and ``class_share_<digit>``. Each evaluation is appended with its distributions and protocol to
    ``digits_metrics.jsonl`` in ``trainer.log_dir``; at the end of fit process 0 prints a one-line summary.

    The real side is the data module's ``split``: by default ``"val"``, which for
    :class:`~lightning_gen.data.DigitsDataModule` is the 1,000 held-out test digits (never trained on) and for an
    :class:`~lightning_gen.data.ImageFolderDataModule` of digit folders (``0`` ... ``9``, e.g. from
    ``lightning-gen make-digits``) its validation files. Labels are read as digits through the data module's
    ``class_names``. A conditional model's samples are drawn with balanced labels (sample ``i`` gets label
    ``i % num_classes``, the same on any number of processes).

    Schedule, sample seeds, ``num_real``, the real-statistics cache and the DDP reduction are those of
    :class:`~lightning_gen.metrics.GenerativeMetricsCallback`; the classifier is cheap, so the cost is generating
    ``num_samples`` images.

    Args:
        num_samples: Generated images per evaluation. Sampling noise alone gives a class TV of about 0.04 at 1,000
            (0.012 at 10,000) and a conditional-accuracy standard error of about 0.005 near 0.97.
        split: Data module split of the real digits (default ``"val"``).
        validity_threshold: See :data:`~lightning_gen.metrics.digits_classifier.DIGITS_VALIDITY_THRESHOLD`.
        class_min_share: See :data:`CLASS_MIN_SHARE`.
        weights: Classifier weights file; default the shipped one.
        expected_sha256: Required sha256 of ``weights`` (default: the shipped file's pin; ``None``: no check).
        protocol_file: File name in ``trainer.log_dir`` for one JSON line per evaluation; ``None`` disables it.
        print_summary: Print the last evaluation's :meth:`DigitsMetricResult.summary` at the end of fit.
        **kwargs: ``every_n_epochs``, ``every_n_steps``, ``num_real``, ``batch_size``, ``seed``, ``cache_dir``,
            ``use_cache``, ``progress``, ``prefix``: see :class:`GenerativeMetricsCallback`.

    Example:
        >>> from lightning.pytorch.callbacks import ModelCheckpoint
        >>> callbacks = [DigitsMetricsCallback(every_n_epochs=1, num_samples=1000),
        ...              ModelCheckpoint(monitor="val/conditional_accuracy", mode="max")]
    """

    def __init__(
        self,
        *,
        num_samples: int = 1_000,
        split: str = "val",
        validity_threshold: float = DIGITS_VALIDITY_THRESHOLD,
        class_min_share: float = CLASS_MIN_SHARE,
        weights: str | os.PathLike | None = None,
        expected_sha256: str | None = DIGITS_CLASSIFIER_SHA256,
        protocol_file: str | None = "digits_metrics.jsonl",
        print_summary: bool = True,
        **kwargs: Any,
    ) -> None:
        reject_inception_arguments(type(self).__name__, kwargs)
        super().__init__(fid=True, num_samples=num_samples, split=split, protocol_file=protocol_file, **kwargs)
        # Checked now, not at the first evaluation an epoch later.
        self._network = digits_feature_network(weights, expected_sha256=expected_sha256)
        self._digits_settings = {"validity_threshold": validity_threshold, "class_min_share": class_min_share}
        DigitsEvaluator(self._network, **self._digits_settings)  # validates the settings
        self.print_summary = print_summary
        self._real_digits: Tensor | None = None
        self._sample_digits: Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage not in ("fit", "validate"):
            return
        if not callable(getattr(pl_module, "sample", None)):
            raise TypeError(
                f"{type(self).__name__} needs a module with sample(n, seed=None) returning images in [-1, 1]; "
                f"{type(pl_module).__name__} has none."
            )
        class_names = _class_names(trainer.datamodule)
        # Real labels count as digits only when the data names its classes by digit; otherwise no real_accuracy.
        self._real_digits = None
        if class_names and all(str(name) in DIGIT_CLASSES for name in class_names):
            self._real_digits = digit_of_label(class_names, len(class_names))
        num_classes = int(getattr(pl_module, "num_classes", 0) or 0)
        self._sample_digits = digit_of_label(class_names, num_classes) if num_classes else None
        # A fresh evaluator per run: real statistics belong to this run's data module.
        self._evaluator = DigitsEvaluator(self._network, **self._digits_settings)
        self._evaluator.sample_labels = BALANCED_LABELS if num_classes else None
        self._real_ready = False

    def _generated_batches(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Iterator[Any]:
        if self._sample_digits is None:
            yield from super()._generated_batches(trainer, pl_module)
            return
        # As the base class shards batches, with the labels of the global sample positions: balanced overall and
        # the same samples on any number of processes.
        num_batches = -(-self.num_samples // self.batch_size)
        rank, world = trainer.global_rank, trainer.world_size
        for index in range(rank * num_batches // world, (rank + 1) * num_batches // world):
            start = index * self.batch_size
            size = min(self.batch_size, self.num_samples - start)
            labels = (torch.arange(start, start + size) % len(self._sample_digits)).to(pl_module.device)
            yield pl_module.sample(size, seed=self.seed + index, labels=labels), self._sample_digits[labels.cpu()]

    def _add_fake(self, evaluator: Any, batch: Any) -> None:
        if isinstance(batch, tuple):
            evaluator.update_fake(*batch)
        else:
            evaluator.update_fake(batch)

    def _add_real(self, images: Tensor, labels: Tensor | None) -> None:
        digits = None if labels is None or self._real_digits is None else self._real_digits[labels.cpu().long()]
        self._evaluator.update_real(images, digits)

    def _log(self, pl_module: pl.LightningModule, result: DigitsMetricResult) -> None:
        for name, value in result.scalars().items():
            # Every process holds the same value (computed from reduced states); see GenerativeMetricsCallback.
            pl_module.log(f"{self.prefix}{name}", value, prog_bar=name == "digits_fd", sync_dist=True, batch_size=1)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.print_summary and self.last_result is not None and trainer.is_global_zero:
            print(f"{type(self).__name__}: {self.last_result.summary()}")


def _class_names(datamodule: Any) -> list[str] | None:
    try:
        names = getattr(datamodule, "class_names", None)
    except NotImplementedError:  # lightning-gen's base data module declares it without defining it
        return None
    return [str(name) for name in names] if names else None
