"""The digits classifier inside :func:`~lightning_gen.metrics.evaluate` and ``lightning-gen fid --extractor digits``.

With ``feature_extractor="digits"`` FID's machinery computes the digits FD on the classifier's features, and
:class:`DigitsMetricEvaluator` also counts the classifier's readings from that same pass, so the result carries
class coverage and validity as :func:`~lightning_gen.metrics.evaluate_digits` computes them. Conditional accuracy
needs the labels the samples were drawn for, which a generic source does not give: use ``evaluate_digits`` (or the
callback) for it. When a side is a ``.npz`` statistics file there is nothing to count: the result carries the FD
alone and its protocol notes say why.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from lightning_gen.metrics.classifier_fid import ClassifierMetricEvaluator
from lightning_gen.metrics.digits import CLASS_MIN_SHARE, DigitsEvaluator, DigitsMetricResult, DigitsProtocol
from lightning_gen.metrics.digits_classifier import (
    DIGITS_CLASSIFIER_NAME,
    DIGITS_VALIDITY_THRESHOLD,
    DigitsFeatureNetwork,
)
from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.protocol import VALUE_NAMES, MetricResult, Protocol

__all__ = ["DIGITS_FD_NOTE", "DIGITS_COUNTS", "DigitsFIDResult", "DigitsMetricEvaluator", "digits_fd_only", "is_digits_extractor"]

#: Protocol note of every digits result with an FID: what that number is.
DIGITS_FD_NOTE = (
    "fid is the digits FD (also reported as digits_fd): the Frechet distance of the digits classifier's features, "
    "comparable only with other digits FDs, never with Inception FID"
)
#: What the digits evaluator counts, for protocol notes.
DIGITS_COUNTS = "class coverage and validity"
_CONDITIONAL_NOTE = "conditional accuracy not computed here (the samples' labels are unknown): use evaluate_digits"


def is_digits_extractor(extractor: FeatureExtractor) -> bool:
    """Whether ``extractor`` is the digits classifier (``build_extractor("digits")``, with any weights file)."""
    return extractor.name == DIGITS_CLASSIFIER_NAME and isinstance(extractor.network, DigitsFeatureNetwork)


@dataclass(frozen=True)
class DigitsFIDResult(MetricResult):
    """:class:`~lightning_gen.metrics.protocol.MetricResult` of the digits extractor.

    ``fid`` is the digits FD, also given as ``digits_fd``; ``digits`` holds class coverage and validity as
    :func:`~lightning_gen.metrics.evaluate_digits` reports them (``None`` when a side is a statistics file).
    """

    protocol: DigitsProtocol
    digits_fd: float | None = None
    digits: DigitsMetricResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: FID's values, then the keys of ``DigitsMetricResult.to_dict`` (``digits_fd``, ``class_tv``,
        ``validity``, ``generated``, ...) and the protocol."""
        values: dict[str, Any] = {name: getattr(self, name) for name in VALUE_NAMES}
        if self.digits is not None:
            return {**values, **self.digits.to_dict(), "protocol": self.protocol.to_dict()}
        return {**values, "digits_fd": self.digits_fd, "protocol": self.protocol.to_dict()}


def _digits_protocol(protocol: Protocol, notes: list[str], **digits_fields: Any) -> DigitsProtocol:
    base = {f.name: getattr(protocol, f.name) for f in fields(Protocol)}
    return DigitsProtocol(**{**base, "notes": notes, **digits_fields})


def digits_fd_only(result: MetricResult, reason: str | None, **settings: Any) -> DigitsFIDResult:
    """``result`` of the digits extractor with its FID also named ``digits_fd``, without class counts.

    Args:
        result: FID / IS / KID / PRDC computed with the digits classifier's features.
        reason: Why the counts are missing, added to the protocol notes (``None``: nothing added).
        **settings: ``validity_threshold`` / ``class_min_share`` recorded in the protocol.
    """
    notes = [*result.protocol.notes, *([DIGITS_FD_NOTE] if result.fid is not None else []), *([reason] if reason else [])]
    protocol = _digits_protocol(result.protocol, notes, **settings)
    return DigitsFIDResult(protocol=protocol, digits_fd=result.fid, **{name: getattr(result, name) for name in VALUE_NAMES})


class DigitsMetricEvaluator(ClassifierMetricEvaluator):
    """FID (the digits FD), IS, KID and PRDC as requested, plus class coverage and validity from the same pass.

    Args:
        extractor: The digits extractor (``build_extractor("digits")``).
        without_counts: When not ``None``, count nothing and report the FD alone (the text goes into the notes).
        validity_threshold: See :data:`~lightning_gen.metrics.digits_classifier.DIGITS_VALIDITY_THRESHOLD`.
        class_min_share: See :data:`~lightning_gen.metrics.digits.CLASS_MIN_SHARE`.
        **settings: :class:`~lightning_gen.metrics.evaluator.MetricEvaluator`'s arguments.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        *,
        without_counts: str | None = None,
        validity_threshold: float = DIGITS_VALIDITY_THRESHOLD,
        class_min_share: float = CLASS_MIN_SHARE,
        **settings: Any,
    ) -> None:
        if not is_digits_extractor(extractor):
            raise ValueError(f"DigitsMetricEvaluator needs the digits classifier extractor, got {extractor.name}.")
        self.settings = {"validity_threshold": validity_threshold, "class_min_share": class_min_share}
        super().__init__(extractor, without_counts=without_counts, **settings)

    def _make_counter(self, network: DigitsFeatureNetwork) -> DigitsEvaluator:
        return DigitsEvaluator(network, device=self.device, **self.settings)

    def compute(self, **context: Any) -> DigitsFIDResult:
        """FID / IS / KID / PRDC plus ``digits_fd`` and (unless ``without_counts``) class coverage and validity."""
        result = super().compute(**context)
        if self.counter is None:
            return digits_fd_only(result, self.without_counts, **self.settings)
        digits = self.counter.compute(**{k: v for k, v in context.items() if k in {f.name for f in fields(DigitsProtocol)}})
        protocol = _digits_protocol(
            result.protocol, [*result.protocol.notes, DIGITS_FD_NOTE, _CONDITIONAL_NOTE], **self.settings
        )
        return DigitsFIDResult(
            protocol=protocol,
            digits_fd=result.fid,
            digits=digits,
            **{name: getattr(result, name) for name in VALUE_NAMES},
        )
