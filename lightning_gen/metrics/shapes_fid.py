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

from torch import Tensor

from lightning_gen.metrics.classifier_fid import ClassifierMetricEvaluator, counts_obstacle
from lightning_gen.metrics.features import FeatureExtractor
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
    return counts_obstacle(metrics, real, fake, "validity and factor coverage")


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


class ShapesMetricEvaluator(ClassifierMetricEvaluator):
    """:class:`~lightning_gen.metrics.classifier_fid.ClassifierMetricEvaluator` for the shapes classifier: FID (the
    FSD), IS, KID and PRDC as requested, plus validity and factor coverage from the same classifier pass.

    The factor counting is a :class:`~lightning_gen.metrics.shapes.ShapesEvaluator` (``self.shapes``) that shares
    this evaluator's FID state, so its FSD, its cached real payload (FID sums plus real factor counts) and its
    numbers are those of :func:`~lightning_gen.metrics.evaluate_shapes` on the same images. Single process only.

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
        self.validity_threshold = validity_threshold
        self.value_min_share = value_min_share
        if without_factors is None and not settings.get("fid", True):
            raise ValueError("Validity and factor coverage come with the FSD: pass fid=True, or without_factors.")
        super().__init__(extractor, without_counts=without_factors, **settings)
        self.without_factors = without_factors

    @property
    def shapes(self) -> ShapesEvaluator | None:
        """The factor-counting evaluator (``None`` with ``without_factors``)."""
        return self.counter

    def _make_counter(self, network: ShapesFeatureNetwork) -> ShapesEvaluator:
        return ShapesEvaluator(
            network, validity_threshold=self.validity_threshold, value_min_share=self.value_min_share,
            device=self.device,
        )

    def _pending_of(self, images: Tensor, logits: dict[str, Tensor]) -> tuple[dict[str, Tensor], bool]:
        return logits, images.shape[1] == 3  # colour is scored only when the images have it

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
