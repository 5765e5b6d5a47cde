"""A shipped classifier inside :func:`~lightning_gen.metrics.evaluate`: FID on its features plus its own counts.

With ``feature_extractor="shapes"`` or ``"digits"`` FID's machinery computes a Fréchet distance on the classifier's
penultimate features, and :class:`ClassifierMetricEvaluator` also keeps the classifier's logits from that same pass
(the classifier runs once per image) and hands them to the classifier's own evaluator
(:class:`~lightning_gen.metrics.shapes.ShapesEvaluator`, :class:`~lightning_gen.metrics.digits.DigitsEvaluator`),
so the result carries what ``evaluate_shapes`` / ``evaluate_digits`` report, computed by the same code. The
subclasses (``shapes_fid.py``, ``digits_fid.py``) say what is counted and how the result looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_gen.metrics.evaluator import MetricEvaluator, quantize_to_uint8
from lightning_gen.metrics.features import FeatureExtractor, Features
from lightning_gen.metrics.sources import ImageSource

__all__ = ["ClassifierMetricEvaluator", "counts_obstacle"]


def counts_obstacle(metrics: Sequence[str], real: ImageSource | None, fake: ImageSource, what: str) -> str | None:
    """Why the classifier's counts (``what``, e.g. "validity and factor coverage") cannot be computed for these
    inputs (a protocol note), or ``None``.

    They need the classifier's predictions on the images of both sides, and they come with the FD (whose state
    the counting shares).
    """
    if "fid" not in metrics or real is None:
        return f"{what} not computed: they come with the FD, so request 'fid' to get them"
    for source in (real, fake):
        if source.kind == "statistics":
            return (
                f"{what} not computed: {source.description} is a statistics file (mean and covariance only) and they "
                f"need the classifier's predictions on images; only the FD is reported"
            )
    return None


class ClassifierMetricEvaluator(MetricEvaluator):
    """:class:`~lightning_gen.metrics.evaluator.MetricEvaluator` for a shipped classifier: FID (on its features),
    IS, KID and PRDC as requested, plus the classifier evaluator's counts from the same pass.

    The counting evaluator (``self.counter``) shares this evaluator's FID state, so its FD, its cached real payload
    (FID sums plus real counts) and its numbers are those of its standalone function on the same images. Single
    process only (``evaluate()``). Subclasses define :meth:`_make_counter`, :meth:`_pending_of` and ``compute``.

    Args:
        extractor: The classifier's extractor.
        without_counts: When not ``None``, count nothing and report the FD alone; the text (why, see
            :func:`counts_obstacle`) goes into the protocol notes.
        **settings: :class:`MetricEvaluator`'s arguments (``fid``, ``inception_score``, ``kid``, ``prdc``, ...,
            ``device``); counting needs ``fid=True``.
    """

    def __init__(self, extractor: FeatureExtractor, *, without_counts: str | None = None, **settings: Any) -> None:
        self.counter: Any = None  # set below; MetricEvaluator.__init__ calls self.to() first
        super().__init__(extractor, **settings)
        self.without_counts = without_counts
        # What the classifier said about the batch whose features were just extracted (see _features).
        self._pending: tuple[Any, ...] | None = None
        if without_counts is None:
            if self.fid is None:
                raise ValueError("The classifier's counts come with the FD: pass fid=True, or without_counts.")
            self.counter = self._make_counter(extractor.network)
            # One FID state for both: the FD the counting evaluator computes and caches is this evaluator's FID.
            self.counter.fid = self.fid

    def _make_counter(self, network: Any) -> Any:  # pragma: no cover - abstract
        """The classifier's own evaluator (``update_real``-style counts in ``real_counts`` / ``fake_counts``)."""
        raise NotImplementedError

    def _pending_of(self, images: Tensor, logits: Any) -> tuple[Any, ...]:
        """The arguments of ``counts.update`` for one batch, from the uint8 images and the classifier's logits."""
        return (logits,)

    @property
    def cache_fingerprint(self) -> str:
        # Real payloads that carry counts are keyed as the counting evaluator keys them (weights + payload layout),
        # so an FID-only entry of the same images (from compute_statistics, or an older evaluate) never serves
        # counts it does not have.
        return self.counter.extractor.fingerprint if self.counter is not None else self.extractor.fingerprint

    def to(self, device: torch.device | str) -> ClassifierMetricEvaluator:
        super().to(device)
        if self.counter is not None:
            self.counter.to(self.device)
        return self

    def _features(self, images: Tensor) -> Features:
        if self.counter is None:
            return super()._features(images)
        images = quantize_to_uint8(images.to(self.device, non_blocking=True))
        pool, logits = self.extractor.network.predict(images)
        # update_real / update_fake call this once per batch: keeping this pass's logits for them is what lets the
        # classifier run once per image.
        self._pending = self._pending_of(images, logits)
        # What FeatureExtractor gives for a network with one output: the features serve FID/KID/PRDC and IS.
        return Features(pool=pool, logits=pool.clone())

    def _take_pending(self) -> tuple[Any, ...]:
        pending, self._pending = self._pending, None
        assert pending is not None, "_features did not run for this batch"
        return pending

    def update_real(self, images: Tensor) -> None:
        super().update_real(images)
        if self.counter is not None:
            self.counter.real_counts.update(*self._take_pending())

    def update_fake(self, images: Tensor) -> None:
        super().update_fake(images)
        if self.counter is not None:
            self.counter.fake_counts.update(*self._take_pending())

    def real_payloads(self) -> dict[str, dict[str, Any]]:
        payloads = super().real_payloads()
        if self.counter is not None:
            payloads.update(self.counter.real_payloads())  # "fid": the same sums plus the real counts
        return payloads

    def load_real_payloads(self, payloads: dict[str, dict[str, Any]]) -> None:
        super().load_real_payloads(payloads)
        if self.counter is not None:
            self.counter.load_real_payloads(payloads)

    def reset_fake(self) -> None:
        super().reset_fake()
        if self.counter is not None:
            self.counter.fake_counts.reset()
