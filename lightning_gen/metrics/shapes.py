"""A known-factor evaluator for the built-in shapes data: FSD, factor coverage and validity.

Offline, FID has no trustworthy network to compare images with. The shapes data, however, knows the factors
behind every image, so a small classifier trained by this project on :class:`~lightning_gen.data.ShapesDataset`
(``tools/train_shapes_classifier.py``; its weights ship inside the package, sha256-pinned) can say which shapes
and colours a generator produces and how often:

- **factor coverage**: per factor (shape kind, colour, horizontal / vertical position third, size third, plain or
  two-colour background), the total variation distance between the distributions of predicted values on
  generated and on real images, and the share of the data's values the generator produces at all;
- **validity**: the share of generated images the classifier assigns to one shape *and* one colour with softmax
  probability at least :data:`VALIDITY_THRESHOLD` each (shape only for grayscale images). The classifier was
  trained to be unsure on noise, blobs and blends of two shapes (outlier exposure), so these score near 0. Real
  images score 0.99 at 32-64 px RGB, 0.92 at 16 px RGB and 0.77 at 16 px grayscale: compare with
  ``real_validity``, which every result carries;
- **Fréchet Shapes Distance (FSD)**: the Fréchet distance between Gaussians fitted to the classifier's 128-d
  penultimate features, with FID's running float64 sums (:class:`~lightning_gen.metrics.statistics.StandardFID`),
  its cache and its cross-process reduction.

Protocol: images are uint8 (N, C, H, W) with C in {1, 3} and any size (the data module offers 16-64 px);
grayscale is replicated to RGB, then images are resized in float to 32x32 (bilinear, antialiased) and scaled to
[-1, 1]. The values are only meaningful for images of the shapes data (any subset of
:data:`~lightning_gen.data.shapes.SHAPE_KINDS`); they are not comparable with FID on other data.

Use :class:`ShapesMetricsCallback` during training (:mod:`lightning_gen.metrics.shapes_callback`, re-exported here) and
:func:`evaluate_shapes` standalone.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_gen.metrics.classifier_evaluation import (
    CLASSIFIER_NUMERICS,
    ClassifierEvaluator,
    add_real_side,
    check_fake_images,
    check_real_images,
    generated_batches,
    metric_versions,
    open_model,
    real_batches,
)
from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.protocol import Protocol
from lightning_gen.metrics.shapes_classifier import (
    FACTORS,
    SHAPES_CLASSIFIER_NAME,
    SHAPES_CLASSIFIER_SHA256,
    SHAPES_RESIZE,
    VALIDITY_THRESHOLD,
    ShapesFeatureNetwork,
    shapes_feature_network,
    sort_by_predicted_shape,
)

__all__ = [
    "VALIDITY_THRESHOLD",
    "VALUE_MIN_SHARE",
    "FactorCoverage",
    "ShapesEvaluator",
    "ShapesMetricResult",
    "ShapesMetricsCallback",
    "ShapesProtocol",
    "evaluate_shapes",
    "shapes_feature_extractor",
    "sort_by_predicted_shape",
]


#: A factor value counts as one the data has when at least this share of the real images is predicted as it (so a
#: rare misclassification of real images does not create a "data value" the generator is blamed for missing).
VALUE_MIN_SHARE = 0.01


class _FactorCounts(Metric):
    """How often each value of each factor is predicted, and how many images are confidently valid.

    Sums only, so the state is tiny and its cross-process reduction is a sum.
    """

    full_state_update = False

    def __init__(self, threshold: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        for name, values in FACTORS.items():
            self.add_state(f"count_{name}", torch.zeros(len(values), dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("images", "colour_images", "valid"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: dict[str, Tensor], colour_visible: bool) -> None:
        """Add one batch's logits; ``colour_visible`` is False for grayscale images (colour is then not counted)."""
        confident = torch.ones(logits["shape"].shape[0], dtype=torch.bool, device=logits["shape"].device)
        for name, values in FACTORS.items():
            if name == "colour" and not colour_visible:
                continue
            probabilities = logits[name].float().softmax(dim=1)
            state = getattr(self, f"count_{name}")
            state += torch.bincount(probabilities.argmax(dim=1), minlength=len(values)).to(state.dtype)
            if name in ("shape", "colour"):
                confident &= probabilities.amax(dim=1) >= self.threshold
        self.images += confident.numel()
        self.colour_images += confident.numel() if colour_visible else 0
        self.valid += confident.sum()

    def compute(self) -> dict[str, Tensor]:
        return self.state()

    def state(self) -> dict[str, Tensor]:
        """The sums as they stand (no cross-process sync: wrap in ``sync_context()`` for the global ones), on CPU."""
        return {name: getattr(self, name).detach().cpu().clone() for name in self._defaults}

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        """Replace the sums with ones from :meth:`state` (e.g. read from the cache)."""
        missing = sorted(set(self._defaults) - set(state))
        if missing:
            raise ValueError(
                f"Cached shapes statistics lack {missing}; the cache entry was written by another version."
            )
        for name in self._defaults:
            setattr(self, name, state[name].to(self.device, torch.float64))
        self._computed = None  # torchmetrics caches the last compute() until the next update


@dataclass(frozen=True)
class ShapesProtocol(Protocol):
    """:class:`~lightning_gen.metrics.protocol.Protocol` plus the settings that define the shapes metrics."""

    validity_threshold: float = VALIDITY_THRESHOLD  # softmax probability for shape and colour
    value_min_share: float = VALUE_MIN_SHARE  # real share above which a factor value is a "data value"
    factors: tuple[str, ...] = tuple(FACTORS)  # factors scored (colour is left out for grayscale images)


@dataclass(frozen=True)
class FactorCoverage:
    """How the generated images' predicted values of one factor compare with the real images'."""

    tv: float  # total variation distance between the two distributions, in [0, 1]
    coverage: float  # share of the data's values (real share >= value_min_share) generated at least once
    missing: tuple[str, ...]  # data values never generated
    generated: dict[str, float]  # share of each value among the generated images
    real: dict[str, float]  # same for the real images


@dataclass(frozen=True)
class ShapesMetricResult:
    """FSD, validity and factor coverage of one evaluation, with its protocol.

    Attributes:
        fsd: Fréchet Shapes Distance (0 for identical feature distributions).
        validity: Share of generated images confidently one shape and one colour.
        real_validity: The same share for the real images (the classifier's own confidence; about 0.99).
        factors: Coverage per factor.
    """

    protocol: ShapesProtocol
    fsd: float
    validity: float
    real_validity: float
    factors: dict[str, FactorCoverage] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """The numbers the callback logs: ``fsd``, ``validity``, ``<factor>_tv``, ``<factor>_coverage`` and
        ``shape_share_<kind>`` for every shape kind the data has."""
        values = {"fsd": self.fsd, "validity": self.validity}
        for name, factor in self.factors.items():
            values[f"{name}_tv"] = factor.tv
            values[f"{name}_coverage"] = factor.coverage
        shape = self.factors.get("shape")
        if shape is not None:
            for kind, share in shape.generated.items():
                if shape.real.get(kind, 0.0) >= self.protocol.value_min_share:
                    values[f"shape_share_{kind}"] = share
        return values

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: scalars at the top level, distributions under ``"factors"``, protocol under ``"protocol"``."""
        return {
            **self.scalars(),
            "real_validity": self.real_validity,
            "factors": {name: asdict(factor) for name, factor in self.factors.items()},
            "protocol": self.protocol.to_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)


class ShapesEvaluator(ClassifierEvaluator):
    """Accumulates real and generated images and computes :class:`ShapesMetricResult` (FSD, validity, coverage).

    It has :class:`~lightning_gen.metrics.evaluator.MetricEvaluator`'s interface (``update_real``, ``update_fake``,
    ``real_payloads``, ``load_real_payloads``, ``reset_fake``, ``compute``), so the FID callback machinery and
    ``evaluate()`` can drive it. Under ``torch.distributed`` each process feeds its share; :meth:`compute` (a
    collective) reduces the sums, so every process gets the single-process numbers.

    Args:
        network: The feature network; default the shipped classifier.
        validity_threshold: Softmax probability a sample needs for its shape and colour to count as valid.
        value_min_share: Real share above which a factor value counts as one the data has.
        device: Where the classifier runs and the states live.

    Example:
        >>> from lightning_gen.data import ShapesDataset
        >>> real, _ = ShapesDataset(num_images=300, seed=0).to_tensors()
        >>> fake, _ = ShapesDataset(num_images=300, seed=1).to_tensors()
        >>> evaluator = ShapesEvaluator()
        >>> evaluator.update_real(real); evaluator.update_fake(fake)
        >>> result = evaluator.compute()
        >>> result.validity > 0.9, result.factors["shape"].coverage
        (True, 1.0)
    """

    def __init__(
        self,
        network: ShapesFeatureNetwork | None = None,
        *,
        validity_threshold: float = VALIDITY_THRESHOLD,
        value_min_share: float = VALUE_MIN_SHARE,
        device: torch.device | str = "cpu",
    ) -> None:
        if not 0.0 < validity_threshold < 1.0:
            raise ValueError(f"validity_threshold must be a probability in (0, 1), got {validity_threshold!r}.")
        if not 0.0 < value_min_share < 1.0:
            raise ValueError(f"value_min_share must be in (0, 1), got {value_min_share!r}.")
        self.validity_threshold = validity_threshold
        self.value_min_share = value_min_share
        super().__init__(
            network if network is not None else ShapesFeatureNetwork(), name=SHAPES_CLASSIFIER_NAME,
            resize=SHAPES_RESIZE, layout="fsd+factor-counts:v1", make_counts=lambda: _FactorCounts(validity_threshold),
            device=device,
        )

    counts_key = "factor_counts"

    def update_real(self, images: Tensor) -> None:
        """Add real images: uint8 (N, C, H, W), the data modules' format."""
        check_real_images(images)
        images, logits = self._predict(images, real=True)
        self.real_counts.update(logits, colour_visible=images.shape[1] == 3)

    def update_fake(self, images: Tensor) -> None:
        """Add generated images: float (N, C, H, W) in [-1, 1] (quantized by rounding, as for FID) or uint8."""
        check_fake_images(images)
        images, logits = self._predict(images, real=False)
        self.fake_counts.update(logits, colour_visible=images.shape[1] == 3)

    def compute(self, **context: Any) -> ShapesMetricResult:
        """The metrics over everything added so far (on all processes: a collective).

        Args:
            **context: Protocol fields only the caller knows (``split``, ``real_fingerprint``, ``sample_seed``,
                ``fake_source``, ``notes``, ...: any field of :class:`ShapesProtocol`).
        """
        known = {f.name for f in fields(ShapesProtocol)}
        unknown = sorted(set(context) - known)
        if unknown:
            raise TypeError(f"compute() got protocol fields {unknown} that ShapesProtocol does not have.")
        with warnings.catch_warnings():
            # A process without samples of its own is normal in a distributed run; the reduction brings them.
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            fsd = float(self.fid.compute())
            real, fake = self.real_counts.compute(), self.fake_counts.compute()
        n_real, n_fake = self.fid.counts
        factors = {}
        for name, values in FACTORS.items():
            real_total = real["colour_images"] if name == "colour" else real["images"]
            fake_total = fake["colour_images"] if name == "colour" else fake["images"]
            if real_total == 0 or fake_total == 0:
                continue  # colour of grayscale images: not scored
            real_share = (real[f"count_{name}"] / real_total).cpu()
            fake_share = (fake[f"count_{name}"] / fake_total).cpu()
            data_values = real_share >= self.value_min_share
            produced = fake[f"count_{name}"].cpu() > 0
            factors[name] = FactorCoverage(
                tv=float((fake_share - real_share).abs().sum() / 2),
                coverage=float((data_values & produced).sum() / data_values.sum()),
                missing=tuple(value for value, d, p in zip(values, data_values, produced) if d and not p),
                generated={value: float(share) for value, share in zip(values, fake_share)},
                real={value: float(share) for value, share in zip(values, real_share)},
            )
        protocol = ShapesProtocol(
            extractor=SHAPES_CLASSIFIER_NAME,
            weights_sha256=self.network.weights_sha256,
            standard=False,
            resize=SHAPES_RESIZE,
            n_real=n_real,
            n_fake=n_fake,
            extractor_numerics=dict(CLASSIFIER_NUMERICS, device_type=self.device.type),
            versions=metric_versions(),
            validity_threshold=self.validity_threshold,
            value_min_share=self.value_min_share,
            factors=tuple(factors),
            **{"split": None, **context},
        )
        return ShapesMetricResult(
            protocol=protocol,
            fsd=fsd,
            validity=float(fake["valid"] / max(float(fake["images"]), 1.0)),
            real_validity=float(real["valid"] / max(float(real["images"]), 1.0)),
            factors=factors,
        )


def shapes_feature_extractor(weights: str | os.PathLike | None = None, download: bool = True) -> FeatureExtractor:
    """The classifier's penultimate features as a named extractor (``feature_extractor="shapes"``).

    FID computed with it *is* the FSD. Alone (e.g. in ``FIDCallback``) it gives no coverage or validity: use
    :class:`ShapesEvaluator` / :class:`ShapesMetricsCallback`, or :func:`~lightning_gen.metrics.evaluate`, which
    adds them.

    Args:
        weights: Weights file; default the shipped one, whose sha256 is checked. A file you name yourself is not
            checked against the pin (its own sha256 is recorded in the protocol).
        download: Unused: the weights ship with the package.
    """
    network = shapes_feature_network(weights, expected_sha256=SHAPES_CLASSIFIER_SHA256 if weights is None else None)
    return FeatureExtractor(
        network,
        name=SHAPES_CLASSIFIER_NAME,
        fingerprint=network.weights_sha256,
        standard=False,
        resize=SHAPES_RESIZE,
        numerics=dict(CLASSIFIER_NUMERICS),
        dims=(network.num_features, network.num_features),
    )


def evaluate_shapes(
    real: Any,
    fake: Any,
    *,
    num_samples: int = 10_000,
    num_real: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    seed: int = 0,
    weights: str | os.PathLike | None = None,
    expected_sha256: str | None = SHAPES_CLASSIFIER_SHA256,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    validity_threshold: float = VALIDITY_THRESHOLD,
    value_min_share: float = VALUE_MIN_SHARE,
) -> ShapesMetricResult:
    """FSD, validity and factor coverage of ``fake`` against the shapes data ``real``.

    Args:
        real: The data: a dataset yielding uint8 images or ``(image, label)`` pairs (e.g.
            ``ShapesDataModule().split_dataset("train")``) or a uint8 tensor (N, C, H, W).
        fake: A model with ``sample(n, seed=...)`` (``GANModule``, ``VAE``, zoo model), a checkpoint path or zoo
            name, or an image tensor (uint8, or float in [-1, 1]).
        num_samples: Images generated from a model (batch ``b`` is ``sample(size, seed=seed + b)``, as in
            :func:`~lightning_gen.metrics.evaluate`).
        num_real: Use the first ``num_real`` real images; default all.
        batch_size: Images per generation and classification batch.
        device: Where the model and the classifier run; default CUDA when available.
        seed: Base seed of the generated samples.
        weights: Classifier weights file; default the shipped one.
        expected_sha256: Required sha256 of ``weights``; ``None`` skips the check.
        cache_dir: Real-statistics cache directory (default ``$LIGHTNING_GEN_CACHE/metrics``).
        use_cache: Cache the real statistics of datasets with a ``fingerprint()`` (e.g. ``ShapesDataset``).
        validity_threshold: See :data:`VALIDITY_THRESHOLD`.
        value_min_share: See :data:`VALUE_MIN_SHARE`.

    Returns:
        The values, per-factor distributions and protocol.
    """
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    evaluator = ShapesEvaluator(
        shapes_feature_network(weights, expected_sha256=expected_sha256),
        validity_threshold=validity_threshold,
        value_min_share=value_min_share,
        device=device,
    )
    batches = real_batches(real, num_real, batch_size)
    if batches[1] < 2:
        raise ValueError(f"FSD needs at least 2 real images, {batches[3]} has {batches[1]}.")
    add_real_side(evaluator, batches, lambda images, _: evaluator.update_real(images), num_real=num_real,
                  cache_dir=cache_dir, use_cache=use_cache)
    sample_seed = None
    if isinstance(fake, Tensor):
        fake_batches = fake.split(batch_size)
        fake_source = "tensor"
    else:
        fake, fake_source = open_model(fake, device)
        sample_seed = seed
        fake_batches = generated_batches(fake, num_samples, batch_size, seed)
    for images in fake_batches:
        evaluator.update_fake(images)
    return evaluator.compute(
        split=batches[3], real_fingerprint=batches[2], sample_seed=sample_seed, fake_source=fake_source
    )


def __getattr__(name: str) -> Any:
    # The training callback lives in shapes_callback (it imports this module); re-exported here on first use.
    if name == "ShapesMetricsCallback":
        from lightning_gen.metrics.shapes_callback import ShapesMetricsCallback

        return ShapesMetricsCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
