"""What the classifier-based evaluators (shapes, digits) share: reading both sides, the real-statistics cache.

:func:`~lightning_gen.metrics.evaluate_shapes` and :func:`~lightning_gen.metrics.evaluate_digits` score generated
images with a classifier this project trains and ships. They read the real side (a dataset or a tensor) and the
generated side (a model, a checkpoint or zoo name, or a tensor) the same way and cache the real side's statistics
the same way; that lives here. What is counted and how the numbers come out stays in ``shapes.py`` / ``digits.py``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_gen._images import to_uint8
from lightning_gen.metrics.cache import RealStatisticsCache

__all__ = [
    "CLASSIFIER_NUMERICS",
    "INCEPTION_ONLY_ARGUMENTS",
    "CacheIdentity",
    "ClassifierEvaluator",
    "RealBatches",
    "add_real_side",
    "check_fake_images",
    "check_real_images",
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
    """Raise ``TypeError`` when a classifier callback is given settings of the Inception metrics.

    Settings left at :class:`~lightning_gen.metrics.GenerativeMetricsCallback`'s defaults are dropped from
    ``kwargs`` instead: LightningCLI (jsonargparse) follows a callback's ``**kwargs`` to that base class and passes
    every one of its parameters, defaults included, so a recipe naming the callback would otherwise never load.
    """
    import inspect

    from lightning_gen.metrics.callbacks import GenerativeMetricsCallback

    defaults = {name: p.default for name, p in inspect.signature(GenerativeMetricsCallback.__init__).parameters.items()}
    for name in [n for n in kwargs if n in INCEPTION_ONLY_ARGUMENTS and n in defaults]:
        if kwargs[name] == defaults[name]:
            del kwargs[name]
    unexpected = sorted(set(kwargs) & set(INCEPTION_ONLY_ARGUMENTS))
    if unexpected:
        raise TypeError(
            f"{owner} does not take {', '.join(unexpected)} (settings of the Inception metrics); add an FIDCallback "
            f"next to it for FID / IS / KID / precision-recall."
        )


def load_pinned_classifier(network: Any, path: Any, expected_sha256: str | None, what: str, tool: str) -> Any:
    """Fill ``network`` from a float16 safetensors file whose sha256 must be ``expected_sha256``; eval mode, frozen.

    What the shapes and digits evaluators share: a missing file names the tool that trains it, a wrong hash says
    the file is damaged or not the shipped one (``expected_sha256=None`` accepts weights you trained yourself).
    """
    from pathlib import Path

    from safetensors.torch import load_file

    from lightning_gen._files import sha256_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} weights {str(path)!r} not found. They ship with lightning-gen (reinstall it), or "
            f"train them with `python {tool} --out {path}`."
        )
    if expected_sha256 is not None:
        digest = sha256_file(path)
        if digest != expected_sha256:
            raise ValueError(
                f"{what} weights {str(path)!r} have sha256 {digest}, expected {expected_sha256}: the file "
                f"is damaged or not the shipped one. Reinstall lightning-gen, or pass expected_sha256=None for "
                f"weights you trained yourself (numbers are then not comparable with the recorded ones)."
            )
    # Weights are stored in float16 (half the size); batch norm's step counter stays an integer.
    state = {key: t.float() if t.is_floating_point() else t for key, t in load_file(str(path)).items()}
    network.load_state_dict(state, strict=True)
    return network.eval().requires_grad_(False)


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

    from lightning_gen._version import __version__

    return {"lightning-gen": __version__, "torchmetrics": torchmetrics.__version__}


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


def check_real_images(images: Tensor) -> None:
    """Real images must be uint8, as the data modules yield them."""
    if images.dtype != torch.uint8:
        raise TypeError(
            f"Real images must be uint8 (N, C, H, W) in [0, 255] as lightning-gen data loaders yield them, got "
            f"{images.dtype}. Convert [0, 1] floats with (x * 255).round().to(torch.uint8)."
        )


def check_fake_images(images: Tensor) -> None:
    """Generated images are float in [-1, 1] (quantized by rounding, as for FID) or uint8."""
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"Expected uint8 images or float images in [-1, 1], got dtype {images.dtype}.")


class ClassifierEvaluator:
    """Base of the shapes and digits evaluators: an FD on a classifier's features plus counts of its readings.

    Holds the feature network, FID's running sums on its features (``fid``), the real and generated counts (two
    ``torchmetrics.Metric`` built by ``make_counts``) and the real-statistics cache identity. It has
    :class:`~lightning_gen.metrics.evaluator.MetricEvaluator`'s interface (``real_payloads``,
    ``load_real_payloads``, ``reset_fake``, ``to``), so the callback machinery and ``evaluate()`` drive it;
    subclasses add ``update_real`` / ``update_fake`` and ``compute``.

    Args:
        network: The classifier as a feature network (``predict`` -> features, logits; ``weights_sha256``).
        name: The classifier's protocol name.
        resize: The preprocessing, as recorded in the protocol.
        layout: Name and version of the cached payload (part of the cache key).
        make_counts: Builds one counts metric (with ``state()`` / ``load_state()``).
        device: Where the classifier runs and the states live.
    """

    needs_real = True
    #: Key of the counts inside the cached "fid" payload.
    counts_key = "counts"

    def __init__(
        self, network: Any, *, name: str, resize: str, layout: str, make_counts: Callable[[], Any], device: Any = "cpu"
    ) -> None:
        from lightning_gen.metrics.statistics import StandardFID

        self.network = network
        fingerprint = hashlib.sha256(f"{network.weights_sha256}:{layout}".encode()).hexdigest()
        self.extractor = CacheIdentity(name, fingerprint, resize)
        self.fid = StandardFID(network.num_features)  # the FD: FID's running sums on the classifier features
        self.kid = self.inception_score = None  # what MetricEvaluator's callers look for
        self.real_counts = make_counts()
        self.fake_counts = make_counts()
        self.device = torch.device("cpu")
        self.to(device)

    def to(self, device: torch.device | str) -> ClassifierEvaluator:
        """Move the classifier and the states to ``device``."""
        self.device = torch.device(device)
        for module in (self.network, self.fid, self.real_counts, self.fake_counts):
            module.to(self.device)
        return self

    def _predict(self, images: Tensor, real: bool) -> tuple[Tensor, Any]:
        """Quantize, classify, add the features to the FD; returns the uint8 images and the logits."""
        images = to_uint8(images.to(self.device, non_blocking=True))
        features, logits = self.network.predict(images)
        self.fid.update(features, real=real)
        return images, logits

    def real_payloads(self) -> dict[str, dict[str, Any]]:
        """Real statistics of all processes (a collective), for the cache: FID sums plus the real counts."""
        with self.fid.sync_context(), self.real_counts.sync_context():
            return {"fid": {**self.fid.real_state(), self.counts_key: self.real_counts.state()}}

    def load_real_payloads(self, payloads: dict[str, dict[str, Any]]) -> None:
        """Install cached real statistics (in a distributed run on one process only; the others keep zeros)."""
        self.fid.load_real_state(payloads["fid"])
        self.real_counts.load_state(payloads["fid"][self.counts_key])

    def reset_fake(self) -> None:
        """Forget the generated images; the real statistics stay."""
        self.fid.reset()
        self.fake_counts.reset()

    def _real_metrics(self) -> dict[str, Any]:
        # The cache kinds with real-side state, as MetricEvaluator names them: the counts travel in the "fid"
        # payload (see real_payloads), keyed by an extractor fingerprint of their own.
        return {"fid": self.fid}
