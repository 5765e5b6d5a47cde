"""``ShapesMetricsCallback``: the shapes evaluator (:mod:`lightning_gen.metrics.shapes`) during training.

What this module is for: FSD, validity and factor coverage logged on a schedule from a Lightning Trainer, with the
protocol written next to the logs and, optionally, a grid of samples sorted by predicted shape. What it is not: the
evaluator itself (:class:`~lightning_gen.metrics.shapes.ShapesEvaluator`, :func:`~lightning_gen.metrics.evaluate_shapes`),
which needs no Lightning.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_gen._images import log_image_grid
from lightning_gen.metrics.callbacks import GenerativeMetricsCallback
from lightning_gen.metrics.classifier_evaluation import reject_inception_arguments
from lightning_gen.metrics.shapes import (
    VALIDITY_THRESHOLD,
    VALUE_MIN_SHARE,
    ShapesEvaluator,
    ShapesMetricResult,
)
from lightning_gen.metrics.shapes_classifier import SHAPES_CLASSIFIER_SHA256, shapes_feature_network, sort_by_predicted_shape

__all__ = ["ShapesMetricsCallback"]


class ShapesMetricsCallback(GenerativeMetricsCallback):
    """Log FSD, validity and factor coverage of the generator's samples on the shapes data during training.

    Logged (with ``prefix``, default ``val/``): ``fsd`` (on the progress bar), ``validity``, ``<factor>_tv`` and
    ``<factor>_coverage`` for every factor of :data:`FACTORS` (colour only for RGB data), and
    ``shape_share_<kind>`` for each shape kind of the data. Each evaluation is appended with its distributions and
    protocol to ``shapes_metrics.jsonl`` in ``trainer.log_dir``.

    Schedule, sample seeds, real images (``split``, ``num_real``), the real-statistics cache and the DDP reduction
    are those of :class:`~lightning_gen.metrics.GenerativeMetricsCallback`; the classifier is cheap, so the cost is
    generating ``num_samples`` images.

    Args:
        num_samples: Generated images per evaluation. Against the default data's 19,600 training images,
            sampling noise alone gives a shape TV of about 0.013 at 2,000 (colour: 0.025); smaller differences
            mean nothing.
        validity_threshold: See :data:`VALIDITY_THRESHOLD`.
        value_min_share: See :data:`VALUE_MIN_SHARE`.
        weights: Classifier weights file; default the shipped one.
        expected_sha256: Required sha256 of ``weights`` (default: the shipped file's pin; ``None``: no check).
        protocol_file: File name in ``trainer.log_dir`` for one JSON line per evaluation; ``None`` disables it.
        sorted_grid: At each evaluation, log a grid of this many samples grouped by predicted shape kind (in
            ``SHAPE_KINDS`` order, unsure ones last) through the trainer's loggers, or as
            ``<log_dir>/samples/val_samples_by_shape_*.png``; 0 (default) logs none.
        **kwargs: ``every_n_epochs``, ``every_n_steps``, ``num_real``, ``split``, ``batch_size``, ``seed``,
            ``cache_dir``, ``use_cache``, ``progress``, ``prefix``: see :class:`GenerativeMetricsCallback`.

    Example:
        >>> from lightning.pytorch.callbacks import ModelCheckpoint
        >>> callbacks = [ShapesMetricsCallback(every_n_epochs=1, num_samples=2000),
        ...              ModelCheckpoint(monitor="val/fsd", mode="min")]
    """

    def __init__(
        self,
        *,
        num_samples: int = 2_000,
        validity_threshold: float = VALIDITY_THRESHOLD,
        value_min_share: float = VALUE_MIN_SHARE,
        weights: str | os.PathLike | None = None,
        expected_sha256: str | None = SHAPES_CLASSIFIER_SHA256,
        protocol_file: str | None = "shapes_metrics.jsonl",
        sorted_grid: int = 0,
        **kwargs: Any,
    ) -> None:
        reject_inception_arguments(type(self).__name__, kwargs)
        super().__init__(fid=True, num_samples=num_samples, protocol_file=protocol_file, **kwargs)
        # Checked now, not at the first evaluation an epoch later.
        self._network = shapes_feature_network(weights, expected_sha256=expected_sha256)
        self._shapes_settings = {"validity_threshold": validity_threshold, "value_min_share": value_min_share}
        ShapesEvaluator(self._network, **self._shapes_settings)  # validates the settings
        if isinstance(sorted_grid, bool) or not isinstance(sorted_grid, int) or sorted_grid < 0:
            raise ValueError(f"sorted_grid must be a number of images >= 0 (0: no grid), got {sorted_grid!r}.")
        self.sorted_grid = sorted_grid

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage not in ("fit", "validate"):
            return
        if not callable(getattr(pl_module, "sample", None)):
            raise TypeError(
                f"{type(self).__name__} needs a module with sample(n, seed=None) returning images in [-1, 1]; "
                f"{type(pl_module).__name__} has none."
            )
        # A fresh evaluator per run: real statistics belong to this run's data module.
        self._evaluator = ShapesEvaluator(self._network, **self._shapes_settings)
        self._real_ready = False

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super()._evaluate(trainer, pl_module)
        if self.sorted_grid and self._evaluator is not None:
            # The first evaluation batch's latents again, grouped by predicted kind: coverage at a glance.
            modes = [(module, module.training) for module in pl_module.modules()]
            pl_module.eval()
            try:
                with torch.no_grad():
                    images = pl_module.sample(self.sorted_grid, seed=self.seed)
            finally:
                for module, mode in modes:
                    module.training = mode
            ordered, _ = sort_by_predicted_shape(images, network=self._network)
            log_image_grid(trainer, f"{self.prefix}samples_by_shape", ordered)

    def _log(self, pl_module: pl.LightningModule, result: ShapesMetricResult) -> None:
        for name, value in result.scalars().items():
            # Every process holds the same value (computed from reduced states); see GenerativeMetricsCallback.
            pl_module.log(f"{self.prefix}{name}", value, prog_bar=name == "fsd", sync_dist=True, batch_size=1)
