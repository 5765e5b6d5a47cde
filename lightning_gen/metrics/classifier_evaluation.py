"""What the classifier-based evaluators (shapes, digits) share: reading both sides, the real-statistics cache.

:func:`~lightning_gen.metrics.evaluate_shapes` and :func:`~lightning_gen.metrics.evaluate_digits` score generated
images with a classifier this project trains and ships. They read the real side (a dataset or a tensor) and the
generated side (a model, a checkpoint or zoo name, or a tensor) the same way and cache the real side's statistics
the same way; that lives here. What is counted and how the numbers come out stays in ``shapes.py`` / ``digits.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_gen.metrics.cache import RealStatisticsCache

__all__ = [
    "CLASSIFIER_NUMERICS",
    "INCEPTION_ONLY_ARGUMENTS",
    "CacheIdentity",
    "RealBatches",
    "add_real_side",
    "generated_batches",
    "metric_versions",
    "open_model",
    "real_batches",
    "reject_inception_arguments",
]

#: How the classifiers compute, for the protocol: float16 weights widened to float32, float32 arithmetic.
CLASSIFIER_NUMERICS = {"weights_dtype": "float16", "dtype": "float32"}
#: Settings of GenerativeMetricsCallback that belong to the Inception metrics, not to a classifier's.
INCEPTION_ONLY_ARGUMENTS = (
    "fid", "inception_score", "kid", "precision_recall", "feature_extractor", "download", "on_missing_weights",
    "real_stats", "is_splits", "kid_subsets", "kid_subset_size", "prdc_k", "rng_seed",
)  # fmt: skip


def reject_inception_arguments(owner: str, kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` when a classifier callback is given settings of the Inception metrics."""
    unexpected = sorted(set(kwargs) & set(INCEPTION_ONLY_ARGUMENTS))
    if unexpected:
        raise TypeError(
            f"{owner} does not take {', '.join(unexpected)} (settings of the Inception metrics); add an FIDCallback "
            f"next to it for FID / IS / KID / precision-recall."
        )


@dataclass(frozen=True)
class CacheIdentity:
    """What the real-statistics cache and the protocol need to know about a classifier extractor."""

    name: str
    fingerprint: str  # cache key part: the weights' sha256 and the payload layout, so FID-only entries never match
    resize: str
    standard: bool = False


def metric_versions() -> dict[str, str]:
    """Library versions recorded in a classifier metric's protocol."""
    import torchmetrics

    import lightning_gen

    return {"lightning-gen": getattr(lightning_gen, "__version__", "unknown"), "torchmetrics": torchmetrics.__version__}


def open_model(fake: Any, device: torch.device) -> tuple[Any, str]:
    """``fake`` as an object with ``sample(n, seed=...)`` (loading a checkpoint path or zoo name) and its
    description for the protocol."""
    named = isinstance(fake, (str, os.PathLike))
    description = f"model: {fake}" if named else f"model: {type(fake).__name__}.sample()"
    if named:
        from lightning_gen.sampling import load_generative_module

        fake = load_generative_module(str(fake), device)
    if not callable(getattr(fake, "sample", None)):
        raise TypeError(
            f"fake must be an image tensor, a model with sample(n, seed=...), a checkpoint path or a zoo name; "
            f"got {type(fake).__name__}."
        )
    return fake, description


def generated_batches(
    model: Any, num_samples: int, batch_size: int, seed: int, labels: Tensor | None = None
) -> Iterator[Tensor]:
    """Batch ``b`` is ``model.sample(size, seed=seed + b)`` (as in :func:`~lightning_gen.metrics.evaluate`), with
    ``labels=`` that batch's slice of ``labels`` when given."""
    for index, start in enumerate(range(0, num_samples, batch_size)):
        size = min(batch_size, num_samples - start)
        with torch.no_grad():
            if labels is None:
                yield model.sample(size, seed=seed + index)
            else:
                yield model.sample(size, seed=seed + index, labels=labels[start : start + size])


#: ``(batches, count, fingerprint, description)``: ``batches()`` yields ``(images, labels or None)``.
RealBatches = tuple[Callable[[], Iterator[tuple[Tensor, Tensor | None]]], int, "str | None", str]


def real_batches(real: Any, num_real: int | None, batch_size: int, labels: Tensor | None = None) -> RealBatches:
    """The real side, a uint8 tensor (with ``labels`` if known) or a map-style dataset of images or
    ``(image, label)`` pairs, as batches of ``(images, labels or None)``; the first ``num_real`` items."""
    if isinstance(real, Tensor):
        images = real[:num_real] if num_real is not None else real
        chosen = None if labels is None else labels[: images.shape[0]]

        def tensor_batches() -> Iterator[tuple[Tensor, Tensor | None]]:
            for start in range(0, images.shape[0], batch_size):
                yield images[start : start + batch_size], None if chosen is None else chosen[start : start + batch_size]

        return tensor_batches, images.shape[0], None, "real tensor"
    if isinstance(real, Dataset) and hasattr(real, "__len__"):
        count = len(real) if num_real is None else min(num_real, len(real))
        fingerprint = real.fingerprint() if callable(getattr(real, "fingerprint", None)) else None

        def dataset_batches() -> Iterator[tuple[Tensor, Tensor | None]]:
            for start in range(0, count, batch_size):
                items = [real[i] for i in range(start, min(count, start + batch_size))]
                pairs = all(isinstance(item, (tuple, list)) for item in items)
                images = torch.stack([item[0] if pairs else item for item in items])
                yield images, torch.tensor([int(item[1]) for item in items]) if pairs else None

        return dataset_batches, count, fingerprint, f"{type(real).__name__}"
    raise TypeError(
        f"real must be a uint8 image tensor or a map-style dataset of images (e.g. "
        f"DigitsDataModule().split_dataset('test')), got {type(real).__name__}."
    )


def add_real_side(
    evaluator: Any,
    batches: RealBatches,
    update: Callable[[Tensor, Tensor | None], None],
    *,
    num_real: int | None,
    cache_dir: str | os.PathLike | None,
    use_cache: bool,
) -> None:
    """Feed the real side to ``evaluator`` through ``update(images, labels)``, or load its payload from the cache
    (datasets with a ``fingerprint()`` only) and save it there after computing."""
    make_batches, _, fingerprint, description = batches
    cache = key = None
    if use_cache and fingerprint is not None:
        cache = RealStatisticsCache(cache_dir)
        key = cache.key(
            kind="fid", data_fingerprint=fingerprint, extractor_fingerprint=evaluator.extractor.fingerprint,
            num_real=num_real,
        )
    payload = cache.load(key) if cache is not None else None
    if payload is not None:
        evaluator.load_real_payloads({"fid": payload})
        return
    for images, labels in make_batches():
        update(images, labels)
    if cache is not None:
        cache.save(key, {"kind": "fid", "source": description, **evaluator.real_payloads()["fid"]})
