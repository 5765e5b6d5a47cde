"""The record that travels with every reported FID / IS / KID: how the number was obtained.

An FID is only comparable with another one computed with the same extractor weights, resize, quantization and
sample counts. :class:`Protocol` holds those facts and :class:`MetricResult` pairs them with the numbers; both
serialise to plain JSON. Nothing here computes anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["MetricResult", "Protocol"]


@dataclass(frozen=True)
class Protocol:
    """How a set of metric values was computed.

    Example:
        >>> p = Protocol(extractor="inception-v3-compat", weights_sha256="ab", standard=True, resize="tf1-bilinear-299",
        ...              n_real=10, n_fake=10, split="train")
        >>> Protocol.from_dict(p.to_dict()) == p
        True
    """

    extractor: str  # "inception-v3-compat" (torch-fidelity's FID Inception) or "custom:<class>"
    weights_sha256: str  # sha256 of the weights file (Inception) or of the custom module's state dict
    standard: bool  # True only for the FID Inception; custom extractors give non-comparable numbers
    resize: str  # how images are brought to the extractor's input size
    n_real: int | None  # real images behind FID/KID (None when only IS was computed)
    n_fake: int  # generated images evaluated
    split: str | None  # where the real images came from: data module split, folder path, ...
    quantization: str = "uint8-round"  # float images in [-1, 1] -> uint8 by rounding before the extractor
    statistics_dtype: str = "float64"  # accumulation and final arithmetic
    is_splits: int | None = None  # IS splits (standard: 10), when IS was computed
    kid_subsets: int | None = None  # KID subsets (torch-fidelity: 100), when KID was computed
    kid_subset_size: int | None = None  # samples per KID subset (torch-fidelity: 1000)
    kid_kernel: str | None = None  # KID kernel, e.g. "poly(degree=3, gamma=1/d, coef=1)"
    rng_seed: int | None = None  # seed of the IS split permutation and KID subsets (torch-fidelity: 2020)
    sample_seed: int | None = None  # base seed of the generated samples, when they were generated here
    real_fingerprint: str | None = None  # fingerprint of the real data (cache key), when known
    versions: dict[str, str] = field(default_factory=dict)  # torch-fidelity, torchmetrics, lightning-gen versions

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class MetricResult:
    """Metric values and the protocol they were computed under. Values not computed are ``None``.

    Example:
        >>> p = Protocol(extractor="x", weights_sha256="ab", standard=False, resize="none", n_real=2, n_fake=2,
        ...              split=None)
        >>> MetricResult(fid=1.5, protocol=p).to_dict()["fid"]
        1.5
    """

    protocol: Protocol
    fid: float | None = None
    inception_score: float | None = None  # mean over splits
    inception_score_std: float | None = None  # population std over splits
    kid: float | None = None  # mean over subsets
    kid_std: float | None = None  # population std over subsets

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary with the values at the top level and the protocol under ``"protocol"``."""
        values = {name: getattr(self, name) for name in ("fid", "inception_score", "inception_score_std", "kid", "kid_std")}
        return {**values, "protocol": self.protocol.to_dict()}

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricResult:
        """Inverse of :meth:`to_dict`."""
        values = {key: value for key, value in data.items() if key != "protocol"}
        return cls(protocol=Protocol.from_dict(data["protocol"]), **values)
