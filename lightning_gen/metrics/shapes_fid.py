"""The shapes classifier inside :func:`~lightning_gen.metrics.evaluate` and ``lightning-gen fid --extractor shapes``.

With ``feature_extractor="shapes"`` FID's machinery computes the Fréchet Shapes Distance (FSD) on the classifier's
features. :class:`ShapesMetricEvaluator` also keeps the classifier's per-factor predictions from that same pass
(the classifier runs once per image) and hands them to a :class:`~lightning_gen.metrics.shapes.ShapesEvaluator`,
so the result carries what :func:`~lightning_gen.metrics.evaluate_shapes` reports, computed by the same code:
validity, real validity and per-factor coverage, under a :class:`~lightning_gen.metrics.shapes.ShapesProtocol`.
IS, KID and PRDC requested alongside are computed on the same features as for any other extractor.

When a side is a ``.npz`` statistics file (mean and covariance only) there is nothing to count: the result then
carries the FSD alone and its protocol notes say why. Not here: reading sources and caching (``evaluate.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from lightning_gen.metrics.evaluator import MetricEvaluator, quantize_to_uint8
from lightning_gen.metrics.features import FeatureExtractor, Features
from lightning_gen.metrics.protocol import VALUE_NAMES, MetricResult, Protocol
from lightning_gen.metrics.shapes import (
    VALUE_MIN_SHARE,
    FactorCoverage,
    ShapesEvaluator,
    ShapesMetricResult,
    ShapesProtocol,
)
from lightning_gen.metrics.shapes_classifier import SHAPES_CLASSIFIER_NAME, VALIDITY_THRESHOLD, ShapesFeatureNetwork
from lightning_gen.metrics.sources import ImageSource

__all__ = [
    "FSD_NOTE",
    "ShapesFIDResult",
    "ShapesMetricEvaluator",
    "factor_counts_obstacle",
    "fsd_only",
    "is_shapes_extractor",
]

#: Protocol note of every shapes result with an FID: what that number is.
FSD_NOTE = (
    "fid is the Frechet Shapes Distance (also reported as fsd): the Frechet distance of the shapes classifier's "
    "features, comparable only with other FSDs, never with Inception FID"
)


def is_shapes_extractor(extractor: FeatureExtractor) -> bool:
    """Whether ``extractor`` is the shapes classifier (``build_extractor("shapes")``, with any weights file)."""
    return extractor.name == SHAPES_CLASSIFIER_NAME and isinstance(extractor.network, ShapesFeatureNetwork)


def factor_counts_obstacle(metrics: Sequence[str], real: ImageSource | None, fake: ImageSource) -> str | None:
    """Why validity and factor coverage cannot be computed for these inputs (a protocol note), or ``None``.

    They need the classifier's predictions on the images of both sides, and they come with the FSD (whose state
    the counting shares).
    """
    if "fid" not in metrics or real is None:
        return "validity and factor coverage not computed: they come with the FSD, so request 'fid' to get them"
    for source in (real, fake):
        if source.kind == "statistics":
            return (
                f"validity and factor coverage not computed: {source.description} is a statistics file (mean and "
                f"covariance only) and they need the classifier's predictions on images; only the FSD is reported"
            )
    return None


@dataclass(frozen=True)
class ShapesFIDResult(MetricResult):
    """:class:`~lightning_gen.metrics.protocol.MetricResult` of the shapes extractor.

    ``fid`` is the FSD, also given as ``fsd``; IS, KID and PRDC as requested. ``validity``, ``real_validity`` and
    ``factors`` are those of :class:`~lightning_gen.metrics.shapes.ShapesMetricResult`; they are ``None`` / empty
    when they could not be computed (a statistics-file side: the protocol notes say why).
    """

    protocol: ShapesProtocol
    fsd: float | None = None
    validity: float | None = None  # share of generated images confidently one shape and one colour
    real_validity: float | None = None  # the same share for the real images
    factors: dict[str, FactorCoverage] = field(default_factory=dict)

    def shapes_result(self) -> ShapesMetricResult | None:
        """The shapes metrics alone, as :func:`~lightning_gen.metrics.evaluate_shapes` gives them; ``None`` when
        only the FSD was computed."""
        if self.fsd is None or self.validity is None or self.real_validity is None:
            return None
        return ShapesMetricResult(
            protocol=self.protocol, fsd=self.fsd, validity=self.validity, real_validity=self.real_validity,
            factors=self.factors,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: FID's values, then the keys of ``ShapesMetricResult.to_dict`` (``fsd``, ``validity``, the
        per-factor scalars such as ``shape_tv``, ``real_validity``, ``factors``) and the protocol."""
        values: dict[str, Any] = {name: getattr(self, name) for name in VALUE_NAMES}
        shapes = self.shapes_result()
        if shapes is not None:
            return {**values, **shapes.to_dict()}
        # The same keys with nothing in them, so readers need not check which case they got.
        return {
            **values, "fsd": self.fsd, "validity": None, "real_validity": None, "factors": {},
            "protocol": self.protocol.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShapesFIDResult:
        """Inverse of :meth:`to_dict` (the flat per-factor scalars are read back from ``factors``)."""
        protocol = dict(data["protocol"])
        protocol["factors"] = tuple(protocol.get("factors", ()))  # JSON turned the tuples into lists
        factors = {
            name: FactorCoverage(**{**entry, "missing": tuple(entry["missing"])})
            for name, entry in (data.get("factors") or {}).items()
        }
        return cls(
            protocol=ShapesProtocol.from_dict(protocol),
            fsd=data.get("fsd"),
            validity=data.get("validity"),
            real_validity=data.get("real_validity"),
            factors=factors,
            **{key: value for key, value in data.items() if key in VALUE_NAMES},
        )


def fsd_only(
    result: MetricResult,
    reason: str | None,
    *,
    validity_threshold: float = VALIDITY_THRESHOLD,
    value_min_share: float = VALUE_MIN_SHARE,
) -> ShapesFIDResult:
    """``result`` of the shapes extractor with its FID also named ``fsd``, without validity or factor coverage.

    Args:
        result: FID / IS / KID / PRDC computed with the shapes classifier's features.
        reason: Why validity and factor coverage are missing, added to the protocol notes (``None``: nothing added).
        validity_threshold: Recorded in the protocol, as for a full result.
        value_min_share: Recorded in the protocol, as for a full result.
    """
    notes = list(result.protocol.notes)
    if result.fid is not None:
        notes.append(FSD_NOTE)
    if reason is not None:
        notes.append(reason)
    protocol = _shapes_protocol(
        result.protocol, notes, validity_threshold=validity_threshold, value_min_share=value_min_share, factors=()
    )
    return ShapesFIDResult(protocol=protocol, fsd=result.fid, **{name: getattr(result, name) for name in VALUE_NAMES})


def _shapes_protocol(protocol: Protocol, notes: list[str], **shapes_fields: Any) -> ShapesProtocol:
    """``protocol`` as a :class:`ShapesProtocol` with the shapes settings and ``notes``."""
    base = {f.name: getattr(protocol, f.name) for f in fields(Protocol)}
    return ShapesProtocol(**{**base, "notes": notes, **shapes_fields})


class ShapesMetricEvaluator(MetricEvaluator):
    """:class:`~lightning_gen.metrics.evaluator.MetricEvaluator` for the shapes classifier: FID (the FSD), IS, KID
    and PRDC as requested, plus validity and factor coverage from the same classifier pass.

    The factor counting is a :class:`~lightning_gen.metrics.shapes.ShapesEvaluator` that shares this evaluator's
    FID state, so its FSD, its cached real payload (FID sums plus real factor counts) and its numbers are those of
    :func:`~lightning_gen.metrics.evaluate_shapes` on the same images. Single process only (``evaluate()``).

    Args:
        extractor: The shapes extractor (``build_extractor("shapes")``).
        without_factors: When not ``None``, count nothing and report the FSD alone; the text (why, see
            :func:`factor_counts_obstacle`) goes into the protocol notes.
        validity_threshold: See :data:`~lightning_gen.metrics.shapes.VALIDITY_THRESHOLD`.
        value_min_share: See :data:`~lightning_gen.metrics.shapes.VALUE_MIN_SHARE`.
        **settings: :class:`MetricEvaluator`'s arguments (``fid``, ``inception_score``, ``kid``, ``prdc``, ...,
            ``device``); counting needs ``fid=True``.

    Raises:
        ValueError: ``extractor`` is not the shapes classifier, or counting is asked for without FID.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        *,
        without_factors: str | None = None,
        validity_threshold: float = VALIDITY_THRESHOLD,
        value_min_share: float = VALUE_MIN_SHARE,
        **settings: Any,
    ) -> None:
        if not is_shapes_extractor(extractor):
            raise ValueError(f"ShapesMetricEvaluator needs the shapes classifier extractor, got {extractor.name}.")
        self.shapes: ShapesEvaluator | None = None  # set below; MetricEvaluator.__init__ calls self.to() first
        super().__init__(extractor, **settings)
        self.without_factors = without_factors
        self.validity_threshold = validity_threshold
        self.value_min_share = value_min_share
        # Factor logits of the batch whose features were just extracted (see _features).
        self._pending: tuple[dict[str, Tensor], bool] | None = None
        if without_factors is None:
            if self.fid is None:
                raise ValueError("Validity and factor coverage come with the FSD: pass fid=True, or without_factors.")
            self.shapes = ShapesEvaluator(
                extractor.network, validity_threshold=validity_threshold, value_min_share=value_min_share,
                device=self.device,
            )
            # One FID state for both: the FSD the ShapesEvaluator computes and caches is this evaluator's FID.
            self.shapes.fid = self.fid

    @property
    def cache_fingerprint(self) -> str:
        # Real payloads that carry factor counts are keyed as ShapesEvaluator keys them (weights + payload layout),
        # so an FID-only entry of the same images (from compute_statistics, or an older evaluate) never serves
        # counts it does not have.
        return self.shapes.extractor.fingerprint if self.shapes is not None else self.extractor.fingerprint

    def to(self, device: torch.device | str) -> ShapesMetricEvaluator:
        super().to(device)
        if self.shapes is not None:
            self.shapes.to(self.device)
        return self

    def _features(self, images: Tensor) -> Features:
        if self.shapes is None:
            return super()._features(images)
        images = quantize_to_uint8(images.to(self.device, non_blocking=True))
        pool, logits = self.extractor.network.predict(images)
        # update_real / update_fake call this once per batch: keeping the factor logits of this pass for them is
        # what lets the classifier run once per image. Colour is scored only when the images have it.
        self._pending = (logits, images.shape[1] == 3)
        # What FeatureExtractor gives for a network with one output: the features serve FID/KID/PRDC and IS.
        return Features(pool=pool, logits=pool.clone())

    def _take_pending(self) -> tuple[dict[str, Tensor], bool]:
        pending, self._pending = self._pending, None
        assert pending is not None, "_features did not run for this batch"
        return pending

    def update_real(self, images: Tensor) -> None:
        super().update_real(images)
        if self.shapes is not None:
            self.shapes.real_counts.update(*self._take_pending())

    def update_fake(self, images: Tensor) -> None:
        super().update_fake(images)
        if self.shapes is not None:
            self.shapes.fake_counts.update(*self._take_pending())

    def real_payloads(self) -> dict[str, dict[str, Any]]:
        payloads = super().real_payloads()
        if self.shapes is not None:
            payloads.update(self.shapes.real_payloads())  # "fid": the same sums plus the real factor counts
        return payloads

    def load_real_payloads(self, payloads: dict[str, dict[str, Any]]) -> None:
        super().load_real_payloads(payloads)
        if self.shapes is not None:
            self.shapes.load_real_payloads(payloads)

    def reset_fake(self) -> None:
        super().reset_fake()
        if self.shapes is not None:
            self.shapes.fake_counts.reset()

    def compute(self, **context: Any) -> ShapesFIDResult:
        """FID / IS / KID / PRDC as :meth:`MetricEvaluator.compute` gives them, plus ``fsd`` and (unless
        ``without_factors``) validity and factor coverage, under a :class:`ShapesProtocol`."""
        result = super().compute(**context)
        settings = {"validity_threshold": self.validity_threshold, "value_min_share": self.value_min_share}
        if self.shapes is None:
            return fsd_only(result, self.without_factors, **settings)
        shapes = self.shapes.compute()
        protocol = _shapes_protocol(
            result.protocol, [*result.protocol.notes, FSD_NOTE], factors=shapes.protocol.factors, **settings
        )
        return ShapesFIDResult(
            protocol=protocol,
            fsd=result.fid,
            validity=shapes.validity,
            real_validity=shapes.real_validity,
            factors=shapes.factors,
            **{name: getattr(result, name) for name in VALUE_NAMES},
        )
