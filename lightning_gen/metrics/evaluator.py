"""The engine shared by the callbacks and the standalone evaluator: images in, :class:`MetricResult` out.

:class:`MetricEvaluator` quantizes float images to uint8 (by rounding), runs the feature extractor once per batch
and feeds the requested metric states (FID, IS, KID, precision/recall/density/coverage). Under
``torch.distributed`` every process feeds its own share and :meth:`MetricEvaluator.compute` (a collective: call it
on every process) reduces them, so all processes get the same numbers. It does not load data, generate samples,
cache or log; its callers do.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from lightning_gen._images import to_uint8
from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.prdc import PrecisionRecallDensityCoverage
from lightning_gen.metrics.protocol import MetricResult, Protocol
from lightning_gen.metrics.statistics import (
    DEFAULT_RNG_SEED,
    StandardFID,
    StandardInceptionScore,
    StandardKID,
)

__all__ = ["MetricEvaluator", "quantize_to_uint8"]


def quantize_to_uint8(images: Tensor) -> Tensor:
    """Float images in [-1, 1] -> uint8 by *rounding* (truncation would darken every pixel by half a level).

    uint8 input is returned unchanged; other integer or bool dtypes are refused rather than misread.

    Example:
        >>> import torch
        >>> quantize_to_uint8(torch.tensor([-1.0, 0.0, 0.999, 1.5])).tolist()
        [0, 128, 255, 255]
    """
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(
            f"Expected uint8 images in [0, 255] or float images in [-1, 1], got dtype {images.dtype}. Convert "
            f"[0, 1] floats with x * 2 - 1."
        )
    return to_uint8(images)


class MetricEvaluator:
    """Accumulates real and generated images and computes FID / IS / KID / PRDC with their protocol.

    Args:
        extractor: The feature extractor (standard Inception, a named one or custom).
        fid: Compute FID.
        inception_score: Compute IS (on the generated images).
        kid: Compute KID.
        prdc: Compute precision, recall, density and coverage.
        is_splits: IS splits (standard: 10).
        kid_subsets: KID subsets (torch-fidelity: 100).
        kid_subset_size: KID subset size (torch-fidelity: 1000; reduced to the smaller side when needed).
        prdc_k: Nearest-neighbour k of PRDC (standard: 3).
        rng_seed: Seed of the IS permutation and KID subsets (torch-fidelity: 2020).
        device: Where the extractor runs and the states live.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        *,
        fid: bool = True,
        inception_score: bool = False,
        kid: bool = False,
        prdc: bool = False,
        is_splits: int = 10,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        prdc_k: int = 3,
        rng_seed: int = DEFAULT_RNG_SEED,
        device: torch.device | str = "cpu",
    ) -> None:
        if not (fid or inception_score or kid or prdc):
            raise ValueError("Nothing to compute: enable at least one of fid, inception_score, kid, prdc.")
        self.extractor = extractor
        self.rng_seed = rng_seed
        pool_dim, logits_dim = self._dims = extractor.dims
        self.fid = StandardFID(pool_dim) if fid else None
        self.inception_score = StandardInceptionScore(logits_dim, splits=is_splits, seed=rng_seed) if inception_score else None
        self.kid = (
            StandardKID(pool_dim, subsets=kid_subsets, subset_size=kid_subset_size, seed=rng_seed) if kid else None
        )
        self.prdc = PrecisionRecallDensityCoverage(pool_dim, k=prdc_k) if prdc else None
        self.device = torch.device("cpu")
        self.to(device)

    @property
    def needs_real(self) -> bool:
        """Whether FID, KID or PRDC (which compare with real images) is requested."""
        return self.fid is not None or self.kid is not None or self.prdc is not None

    @property
    def cache_fingerprint(self) -> str:
        """The extractor part of the real-statistics cache key: the weights' fingerprint. An evaluator whose real
        payloads carry more than these metrics' states (the shapes one adds factor counts) keys them its own way,
        so it is never served an entry without them."""
        return self.extractor.fingerprint

    def _metrics(self) -> list[Any]:
        return [m for m in (self.fid, self.inception_score, self.kid, self.prdc) if m is not None]

    def _real_metrics(self) -> dict[str, Any]:
        """The metrics with real-side state, by cache kind: FID sums, and the features KID and PRDC keep."""
        return {kind: metric for kind, metric in (("fid", self.fid), ("kid", self.kid), ("prdc", self.prdc)) if metric is not None}

    def to(self, device: torch.device | str) -> MetricEvaluator:
        """Move the extractor and the states to ``device``."""
        self.device = torch.device(device)
        self.extractor.to(self.device)
        for metric in self._metrics():
            metric.to(self.device)
        return self

    def _features(self, images: Tensor) -> Any:
        images = quantize_to_uint8(images.to(self.device, non_blocking=True))
        features = self.extractor(images)
        if (features.pool.shape[1], features.logits.shape[1]) != self._dims:
            raise ValueError(
                f"{self.extractor.name} returned {features.pool.shape[1]} features per image, but declared "
                f"{self._dims[0]} (its num_features attribute); make them agree."
            )
        return features

    def update_real(self, images: Tensor) -> None:
        """Add real images: uint8 (N, C, H, W) as the data modules yield them, or float in [-1, 1] (e.g. a model's
        samples used as the reference), quantized by rounding."""
        if not self.needs_real:
            return
        features = self._features(images)
        for kind, metric in self._real_metrics().items():
            metric.update(features.pool, real=True)

    def update_fake(self, images: Tensor) -> None:
        """Add generated images: float (N, C, H, W) in [-1, 1] (quantized here by rounding) or uint8."""
        features = self._features(images)
        if self.inception_score is not None:
            self.inception_score.update(features.logits)
        for metric in (self.fid, self.kid, self.prdc):
            if metric is not None:
                metric.update(features.pool, real=False)

    def real_payloads(self) -> dict[str, dict[str, Any]]:
        """Real statistics gathered from all processes, per kind (``"fid"``, ``"kid"``, ``"prdc"``), for the cache.

        A collective under ``torch.distributed``: call it on every process.
        """
        payloads = {}
        for kind, metric in self._real_metrics().items():
            with metric.sync_context():
                payloads[kind] = metric.real_state()
        return payloads

    def load_real_payloads(self, payloads: dict[str, dict[str, Any]]) -> None:
        """Install cached real statistics (in a distributed run: on one process only, the others keep zeros)."""
        for kind, metric in self._real_metrics().items():
            metric.load_real_state(payloads[kind])

    def reset_fake(self) -> None:
        """Forget the generated images (real statistics are kept)."""
        for metric in self._metrics():
            metric.reset()

    def compute(self, **context: Any) -> MetricResult:
        """Compute the requested metrics over everything added so far (on all processes: a collective).

        Args:
            **context: Protocol fields only the caller knows: ``split``, ``real_fingerprint``, ``sample_seed``,
                ``real_sample_seed``, ``real_subset_seed``, ``fake_source``, ``real_decoding``, ``real_resize``,
                ``notes`` (see :class:`~lightning_gen.metrics.protocol.Protocol`).
        """
        values: dict[str, float] = {}
        counts: dict[str, int | None] = {}
        notes = list(context.pop("notes", None) or [])
        with warnings.catch_warnings():
            # A process that received no samples of its own is normal in a distributed run (the reduction brings
            # them); torchmetrics would warn about it.
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            if self.fid is not None:
                values["fid"] = float(self.fid.compute())
                counts["n_real"], counts["n_fake"] = self.fid.counts
            if self.inception_score is not None:
                mean, std = self.inception_score.compute()
                values["inception_score"], values["inception_score_std"] = float(mean), float(std)
                counts["n_fake"] = self.inception_score.count
            if self.kid is not None:
                mean, std = self.kid.compute()
                values["kid"], values["kid_std"] = float(mean), float(std)
                counts["n_real"], counts["n_fake"] = self.kid.counts
                if self.kid.note:
                    notes.append(self.kid.note)
            if self.prdc is not None:
                values.update(self.prdc.compute())
                counts["n_real"], counts["n_fake"] = self.prdc.counts
        needs_real = self.needs_real
        protocol = Protocol(
            extractor=self.extractor.name,
            weights_sha256=self.extractor.fingerprint,
            standard=self.extractor.standard,
            resize=self.extractor.resize,
            n_real=counts.get("n_real"),
            n_fake=counts.get("n_fake"),
            split=context.pop("split", None) if needs_real else None,
            is_splits=self.inception_score.splits if self.inception_score is not None else None,
            kid_subsets=self.kid.subsets if self.kid is not None else None,
            kid_subset_size=self.kid.subset_size_used if self.kid is not None else None,
            kid_kernel=_kid_kernel(self.kid) if self.kid is not None else None,
            prdc_k=self.prdc.k if self.prdc is not None else None,
            rng_seed=self.rng_seed if (self.inception_score is not None or self.kid is not None) else None,
            real_fingerprint=context.pop("real_fingerprint", None) if needs_real else None,
            extractor_numerics=self.extractor.numerics(),
            notes=notes,
            versions=versions(),
            **{key: value for key, value in context.items() if key not in ("split", "real_fingerprint")},
        )
        return MetricResult(protocol=protocol, **values)


def _kid_kernel(kid: StandardKID) -> str:
    gamma = "1/d" if kid.gamma is None else repr(kid.gamma)
    return f"poly(degree={kid.degree}, gamma={gamma}, coef={kid.coef})"


def versions() -> dict[str, str]:
    """Versions of the packages whose code computes the numbers, for the protocol."""
    import torch_fidelity
    import torchmetrics

    from lightning_gen._version import __version__

    return {
        "lightning-gen": __version__,
        "torch": torch.__version__,
        "torch-fidelity": torch_fidelity.__version__,
        "torchmetrics": torchmetrics.__version__,
    }
