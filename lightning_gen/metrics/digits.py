"""A digits evaluator: digits FD, class coverage, validity and conditional accuracy, meaningful offline.

Offline, FID has no trustworthy network to compare images with. For handwritten digits a small classifier trained
by this project on the built-in MNIST **training** digits (``tools/train_digits_classifier.py``; its weights ship
inside the package, sha256-pinned; the 1,000 test digits are never trained on) reads every image, and says:

- **digits FD**: the Fréchet distance between Gaussians fitted to the classifier's 128-d penultimate features,
  with FID's running float64 sums (:class:`~lightning_gen.metrics.statistics.StandardFID`), its cache and its
  cross-process reduction. Comparable only with other digits FDs (same weights), never with Inception FID;
- **class coverage**: the total variation distance between the predicted-class distributions of the generated and
  the real images (``class_tv``, 0 = same shares), the shares of each class, and which of the data's classes are
  (almost) never generated;
- **conditional accuracy** (class-conditional models): the share of samples the classifier reads as the label they
  were drawn for, with labels drawn balanced (sample ``i`` of an evaluation gets label ``i % num_classes``). Compare
  with ``real_accuracy``, the classifier's accuracy on the real side (0.99 on the built-in test digits);
- **validity**: the share of generated images read as one digit with softmax probability >= 0.7 (the classifier
  was trained to be unsure on noise and on two overlaid digits); ``real_validity`` is the same share for the data.

Protocol: images are uint8 (N, C, H, W), C in {1, 3} (RGB is averaged to grey), any size; see
:func:`~lightning_gen.metrics.digits_classifier.prepare_digits_images`. Labels are mapped to digits through the
data's class names, so a folder of only ``3`` and ``7`` works too. Use
:class:`~lightning_gen.metrics.digits_callback.DigitsMetricsCallback` during training, :func:`evaluate_digits`
standalone, ``feature_extractor="digits"`` / ``lightning-gen fid --extractor digits`` for the FD and class coverage
between any two sources.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_gen.data.digits import DIGIT_CLASSES
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
from lightning_gen.metrics.digits_classifier import (
    DIGITS_CLASSIFIER_NAME,
    DIGITS_CLASSIFIER_SHA256,
    DIGITS_RESIZE,
    DIGITS_VALIDITY_THRESHOLD,
    DigitsFeatureNetwork,
    digits_feature_network,
)
from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.protocol import Protocol

__all__ = [
    "CLASS_MIN_SHARE",
    "DigitsEvaluator",
    "DigitsMetricResult",
    "DigitsProtocol",
    "balanced_labels",
    "digit_of_label",
    "digits_feature_extractor",
    "evaluate_digits",
]

#: A class counts as one the data has (real side) or as generated (generated side) when at least this share of the
#: images is read as it: a stray misreading is not coverage.
CLASS_MIN_SHARE = 0.01
_NUM_DIGITS = len(DIGIT_CLASSES)
#: How conditional samples get their labels, as recorded in the protocol.
BALANCED_LABELS = "balanced: sample i of an evaluation is drawn for label i % num_classes"


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """Labels ``0, 1, ..., num_classes - 1, 0, 1, ...`` for ``n`` samples (every class within one of ``n / k``).

    Example:
        >>> balanced_labels(5, 3).tolist()
        [0, 1, 2, 0, 1]
    """
    return torch.arange(n) % num_classes


def digit_of_label(class_names: Sequence[str] | None, num_classes: int) -> Tensor:
    """The digit (0-9) each label ``0 .. num_classes - 1`` stands for, from the data's class names.

    Without class names, label ``i`` is digit ``i`` (the built-in digits' and MNIST's order).

    Raises:
        ValueError: A class name is not a digit, or there are more than 10 classes.

    Example:
        >>> digit_of_label(["3", "7"], 2).tolist(), digit_of_label(None, 10).tolist()[:3]
        ([3, 7], [0, 1, 2])
    """
    if class_names:
        names = [str(name) for name in class_names]
        if len(names) != num_classes or any(name not in DIGIT_CLASSES for name in names):
            raise ValueError(
                f"The digits evaluator reads labels through class names '0'..'9'; got {names[:12]} for {num_classes} "
                f"classes. Name the class folders by their digit (e.g. `lightning-gen make-digits DIR`)."
            )
        return torch.tensor([int(name) for name in names])
    if not 0 < num_classes <= _NUM_DIGITS:
        raise ValueError(
            f"A model with {num_classes} classes cannot be read as digits without class names: label i is digit i "
            f"for up to 10 classes. Pass class_names=[...] naming the digit of each label."
        )
    return torch.arange(num_classes)


class _ClassCounts(Metric):
    """Predicted-class counts, confident ("valid") images and, for labelled images, correct readings per label.

    Sums only, so the state is tiny and its cross-process reduction is a sum.
    """

    full_state_update = False

    def __init__(self, threshold: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        for name in ("predicted", "labelled", "correct"):
            self.add_state(name, torch.zeros(_NUM_DIGITS, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("images", "valid"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, digits: Tensor | None = None) -> None:
        """Add one batch's logits (N, 10); ``digits`` (N,) are the digits the images should show, if known."""
        probabilities = logits.float().softmax(dim=1)
        confidence, predicted = probabilities.max(dim=1)
        self.predicted += torch.bincount(predicted, minlength=_NUM_DIGITS).to(torch.float64)
        self.images += predicted.numel()
        self.valid += (confidence >= self.threshold).sum()
        if digits is not None:
            digits = digits.to(predicted.device)
            self.labelled += torch.bincount(digits, minlength=_NUM_DIGITS).to(torch.float64)
            self.correct += torch.bincount(digits[predicted == digits], minlength=_NUM_DIGITS).to(torch.float64)

    def compute(self) -> dict[str, Tensor]:
        return self.state()

    def state(self) -> dict[str, Tensor]:
        """The sums as they stand (no cross-process sync: wrap in ``sync_context()`` for the global ones), on CPU."""
        return {name: getattr(self, name).detach().cpu().clone() for name in self._defaults}

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        """Replace the sums with ones from :meth:`state` (e.g. read from the cache)."""
        missing = sorted(set(self._defaults) - set(state))
        if missing:
            raise ValueError(f"Cached digits statistics lack {missing}; the cache entry was written by another version.")
        for name in self._defaults:
            setattr(self, name, state[name].to(self.device, torch.float64))
        self._computed = None  # torchmetrics caches the last compute() until the next update


@dataclass(frozen=True)
class DigitsProtocol(Protocol):
    """:class:`~lightning_gen.metrics.protocol.Protocol` plus the settings that define the digits metrics."""

    validity_threshold: float = DIGITS_VALIDITY_THRESHOLD  # softmax probability of one class for a valid digit
    class_min_share: float = CLASS_MIN_SHARE  # share above which a class counts as present (data) / generated
    sample_labels: str | None = None  # how conditional samples were labelled (None: unconditional or unlabelled)


@dataclass(frozen=True)
class DigitsMetricResult:
    """Digits FD, class coverage, validity and conditional accuracy of one evaluation, with its protocol.

    Attributes:
        digits_fd: Fréchet distance of the classifier's features (0 for identical feature distributions).
        class_tv: Total variation distance between generated and real predicted-class shares, in [0, 1].
        class_coverage: Share of the data's classes that are generated (each with share >= ``class_min_share``).
        missing: Data classes not generated.
        validity: Share of generated images read as one digit with probability >= ``validity_threshold``.
        real_validity: The same share for the real images.
        conditional_accuracy: Share of generated samples read as the digit they were drawn for; ``None`` when
            the samples have no labels (unconditional model).
        real_accuracy: The classifier's accuracy on the real images; ``None`` when they have no digit labels.
        generated: Share of each class among the generated images' readings.
        real: The same for the real images.
        per_class_accuracy: Conditional accuracy per requested digit (``None`` as ``conditional_accuracy``).
    """

    protocol: DigitsProtocol
    digits_fd: float
    class_tv: float
    class_coverage: float
    missing: tuple[str, ...]
    validity: float
    real_validity: float
    conditional_accuracy: float | None
    real_accuracy: float | None
    generated: dict[str, float] = field(default_factory=dict)
    real: dict[str, float] = field(default_factory=dict)
    per_class_accuracy: dict[str, float] | None = None

    def scalars(self) -> dict[str, float]:
        """The numbers the callback logs: ``digits_fd``, ``class_tv``, ``class_coverage``, ``validity``,
        ``conditional_accuracy`` and ``real_accuracy`` (when known) and ``class_share_<digit>`` per data class."""
        values = {
            "digits_fd": self.digits_fd, "class_tv": self.class_tv, "class_coverage": self.class_coverage,
            "validity": self.validity,
        }  # fmt: skip
        for name in ("conditional_accuracy", "real_accuracy"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        for digit, share in self.generated.items():
            if self.real.get(digit, 0.0) >= self.protocol.class_min_share:
                values[f"class_share_{digit}"] = share
        return values

    def summary(self) -> str:
        """One line for people: the main numbers and what to compare them with."""
        parts = [f"digits FD {self.digits_fd:.2f}"]
        if self.conditional_accuracy is not None:
            real = f" (real digits: {self.real_accuracy:.3f})" if self.real_accuracy is not None else ""
            parts.append(f"conditional accuracy {self.conditional_accuracy:.3f}{real}")
        parts.append(f"class TV {self.class_tv:.3f}")
        parts.append(f"validity {self.validity:.3f} (real {self.real_validity:.3f})")
        if self.missing:
            parts.append(f"missing classes {', '.join(self.missing)}")
        return f"{', '.join(parts)} [{self.protocol.n_fake} samples vs {self.protocol.n_real} real, {self.protocol.split}]"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: scalars at the top level, then distributions, missing classes and the protocol."""
        return {
            **self.scalars(),
            "real_validity": self.real_validity,
            "conditional_accuracy": self.conditional_accuracy,
            "real_accuracy": self.real_accuracy,
            "missing": list(self.missing),
            "generated": self.generated,
            "real": self.real,
            "per_class_accuracy": self.per_class_accuracy,
            "protocol": self.protocol.to_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DigitsMetricResult:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in fields(cls)} - {"protocol", "missing"}
        return cls(
            protocol=DigitsProtocol.from_dict(data["protocol"]),
            missing=tuple(data.get("missing", ())),
            **{name: data.get(name) for name in names},
        )


class DigitsEvaluator(ClassifierEvaluator):
    """Accumulates real and generated images and computes a :class:`DigitsMetricResult`.

    It has :class:`~lightning_gen.metrics.evaluator.MetricEvaluator`'s interface (``update_real``, ``update_fake``,
    ``real_payloads``, ``load_real_payloads``, ``reset_fake``, ``compute``), so the callback machinery drives it.
    Under ``torch.distributed`` each process feeds its share; :meth:`compute` (a collective) reduces the sums.

    Args:
        network: The feature network; default the shipped classifier.
        validity_threshold: Softmax probability of one class an image needs to count as a valid digit.
        class_min_share: See :data:`CLASS_MIN_SHARE`.
        device: Where the classifier runs and the states live.

    Example:
        >>> from lightning_gen.data import DigitsDataset
        >>> real, digits = DigitsDataset("test").to_tensors()
        >>> evaluator = DigitsEvaluator()
        >>> evaluator.update_real(real[0::2], digits[0::2]); evaluator.update_fake(real[1::2], digits[1::2])
        >>> result = evaluator.compute()
        >>> result.conditional_accuracy > 0.97, result.class_tv < 0.05
        (True, True)
    """

    counts_key = "class_counts"

    def __init__(
        self,
        network: DigitsFeatureNetwork | None = None,
        *,
        validity_threshold: float = DIGITS_VALIDITY_THRESHOLD,
        class_min_share: float = CLASS_MIN_SHARE,
        device: torch.device | str = "cpu",
    ) -> None:
        if not 0.0 < validity_threshold < 1.0:
            raise ValueError(f"validity_threshold must be a probability in (0, 1), got {validity_threshold!r}.")
        if not 0.0 < class_min_share < 1.0:
            raise ValueError(f"class_min_share must be in (0, 1), got {class_min_share!r}.")
        self.validity_threshold = validity_threshold
        self.class_min_share = class_min_share
        self.sample_labels: str | None = None  # protocol default: how the callback labels conditional samples
        super().__init__(
            network if network is not None else DigitsFeatureNetwork(), name=DIGITS_CLASSIFIER_NAME,
            resize=DIGITS_RESIZE, layout="digits-fd+class-counts:v1",
            make_counts=lambda: _ClassCounts(validity_threshold), device=device,
        )

    def _update(self, images: Tensor, digits: Tensor | None, real: bool) -> None:
        if digits is not None and digits.shape != (images.shape[0],):
            raise ValueError(f"Expected one digit label per image ({images.shape[0]}), got shape {tuple(digits.shape)}.")
        _, logits = self._predict(images, real=real)
        (self.real_counts if real else self.fake_counts).update(logits, digits)

    def update_real(self, images: Tensor, digits: Tensor | None = None) -> None:
        """Add real images, uint8 (N, C, H, W) as the data modules yield them, and the digit each shows if known."""
        check_real_images(images)
        self._update(images, digits, real=True)

    def update_fake(self, images: Tensor, digits: Tensor | None = None) -> None:
        """Add generated images (float in [-1, 1], quantized by rounding as for FID, or uint8) and, for a
        conditional model, the digit each was drawn for."""
        check_fake_images(images)
        self._update(images, digits, real=False)

    def compute(self, **context: Any) -> DigitsMetricResult:
        """The metrics over everything added so far (on all processes: a collective).

        Args:
            **context: Protocol fields only the caller knows (``split``, ``real_fingerprint``, ``sample_seed``,
                ``fake_source``, ``sample_labels``, ``notes``, ...: any field of :class:`DigitsProtocol`).
        """
        unknown = sorted(set(context) - {f.name for f in fields(DigitsProtocol)})
        if unknown:
            raise TypeError(f"compute() got protocol fields {unknown} that DigitsProtocol does not have.")
        with warnings.catch_warnings():
            # A process without samples of its own is normal in a distributed run; the reduction brings them.
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            digits_fd = float(self.fid.compute())
            real, fake = self.real_counts.compute(), self.fake_counts.compute()
        n_real, n_fake = self.fid.counts
        real_share = real["predicted"] / real["images"].clamp(min=1)
        fake_share = fake["predicted"] / fake["images"].clamp(min=1)
        present = real_share >= self.class_min_share
        generated = fake_share >= self.class_min_share
        protocol = DigitsProtocol(
            extractor=DIGITS_CLASSIFIER_NAME,
            weights_sha256=self.network.weights_sha256,
            standard=False,
            resize=DIGITS_RESIZE,
            n_real=n_real,
            n_fake=n_fake,
            extractor_numerics=dict(CLASSIFIER_NUMERICS, device_type=self.device.type),
            versions=metric_versions(),
            validity_threshold=self.validity_threshold,
            class_min_share=self.class_min_share,
            **{"split": None, "sample_labels": self.sample_labels, **context},
        )
        conditional = fake["labelled"].sum() > 0

        def accuracy(counts: dict[str, Tensor]) -> float | None:
            return float(counts["correct"].sum() / counts["labelled"].sum()) if counts["labelled"].sum() > 0 else None

        return DigitsMetricResult(
            protocol=protocol,
            digits_fd=digits_fd,
            class_tv=float((fake_share - real_share).abs().sum() / 2),
            class_coverage=float((present & generated).sum() / present.sum().clamp(min=1)),
            missing=tuple(d for d, p, g in zip(DIGIT_CLASSES, present, generated) if p and not g),
            validity=float(fake["valid"] / fake["images"].clamp(min=1)),
            real_validity=float(real["valid"] / real["images"].clamp(min=1)),
            conditional_accuracy=accuracy(fake),
            real_accuracy=accuracy(real),
            generated={d: float(s) for d, s in zip(DIGIT_CLASSES, fake_share)},
            real={d: float(s) for d, s in zip(DIGIT_CLASSES, real_share)},
            per_class_accuracy={
                d: float(c / n) for d, c, n in zip(DIGIT_CLASSES, fake["correct"], fake["labelled"]) if n > 0
            } if conditional else None,
        )  # fmt: skip


def digits_feature_extractor(weights: str | os.PathLike | None = None, download: bool = True) -> FeatureExtractor:
    """The classifier's penultimate features as a named extractor (``feature_extractor="digits"``).

    FID computed with it *is* the digits FD. With :func:`~lightning_gen.metrics.evaluate` the result also carries
    class coverage and validity; conditional accuracy needs the labels the samples were drawn for: use
    :func:`evaluate_digits` or :class:`~lightning_gen.metrics.digits_callback.DigitsMetricsCallback`.

    Args:
        weights: Weights file; default the shipped one, whose sha256 is checked. A file you name yourself is not
            checked against the pin (its own sha256 is recorded in the protocol).
        download: Unused: the weights ship with the package.
    """
    network = digits_feature_network(weights, expected_sha256=DIGITS_CLASSIFIER_SHA256 if weights is None else None)
    return FeatureExtractor(
        network,
        name=DIGITS_CLASSIFIER_NAME,
        fingerprint=network.weights_sha256,
        standard=False,
        resize=DIGITS_RESIZE,
        numerics=dict(CLASSIFIER_NUMERICS),
        dims=(network.num_features, network.num_features),
    )


def evaluate_digits(
    real: Any,
    fake: Any,
    *,
    num_samples: int = 5_000,
    fake_labels: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    num_real: int | None = None,
    batch_size: int = 250,
    device: str | torch.device | None = None,
    seed: int = 0,
    weights: str | os.PathLike | None = None,
    expected_sha256: str | None = DIGITS_CLASSIFIER_SHA256,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    validity_threshold: float = DIGITS_VALIDITY_THRESHOLD,
    class_min_share: float = CLASS_MIN_SHARE,
) -> DigitsMetricResult:
    """Digits FD, class coverage, validity and (conditional models) conditional accuracy of ``fake`` vs ``real``.

    Args:
        real: The real digits: a dataset yielding ``(image, label)`` pairs or uint8 images (e.g.
            ``DigitsDataModule().split_dataset("test")``, the held-out digits) or a uint8 tensor (N, C, H, W).
            Labels are read as digits through the dataset's ``class_names`` when it has them.
        fake: A model with ``sample(n, seed=..., labels=...)`` (``GANModule``, ``VAE``, zoo model), a checkpoint
            path or zoo name, or an image tensor (uint8, or float in [-1, 1]).
        num_samples: Images generated from a model. Batch ``b`` is ``sample(size, seed=seed + b)``; a conditional
            model (``num_classes > 0``) gets balanced labels (sample ``i``: label ``i % num_classes``).
        fake_labels: For an image tensor: the label each image was drawn for (gives conditional accuracy).
        class_names: The digit each label of the model (or ``fake_labels``) stands for, e.g. ``["3", "7"]``;
            default label ``i`` is digit ``i``.
        num_real: Use the first ``num_real`` real images; default all.
        batch_size: Images per generation and classification batch.
        device: Where the model and the classifier run; default CUDA when available.
        seed: Base seed of the generated samples.
        weights: Classifier weights file; default the shipped one.
        expected_sha256: Required sha256 of ``weights``; ``None`` skips the check.
        cache_dir: Real-statistics cache directory (default ``$LIGHTNING_GEN_CACHE/metrics``).
        use_cache: Cache the real statistics of datasets with a ``fingerprint()`` (e.g. ``DigitsDataset``).
        validity_threshold: See :data:`~lightning_gen.metrics.digits_classifier.DIGITS_VALIDITY_THRESHOLD`.
        class_min_share: See :data:`CLASS_MIN_SHARE`.

    Returns:
        The values, class distributions and protocol.

    Example:
        >>> from lightning_gen.data import DigitsDataModule
        >>> test = DigitsDataModule().split_dataset("test")
        >>> images, labels = test.to_tensors()
        >>> result = evaluate_digits(test, images, fake_labels=labels, use_cache=False)
        >>> result.class_tv, result.conditional_accuracy == result.real_accuracy
        (0.0, True)
    """
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    evaluator = DigitsEvaluator(
        digits_feature_network(weights, expected_sha256=expected_sha256),
        validity_threshold=validity_threshold,
        class_min_share=class_min_share,
        device=device,
    )
    batches = real_batches(real, num_real, batch_size)
    if batches[1] < 2:
        raise ValueError(f"The digits FD needs at least 2 real images, {batches[3]} has {batches[1]}.")
    real_names = getattr(real, "class_names", None)
    real_digits = digit_of_label(real_names, len(real_names)) if real_names else torch.arange(_NUM_DIGITS)

    def add_real(images: Tensor, labels: Tensor | None) -> None:
        evaluator.update_real(images, None if labels is None else real_digits[labels])

    add_real_side(evaluator, batches, add_real, num_real=num_real, cache_dir=cache_dir, use_cache=use_cache)
    sample_seed = sample_labels = None
    if isinstance(fake, Tensor):
        fake_source = "tensor"
        if fake_labels is not None:
            if fake_labels.shape != (fake.shape[0],):
                raise ValueError(f"fake_labels must have shape ({fake.shape[0]},), got {tuple(fake_labels.shape)}.")
            digits = digit_of_label(class_names, int(fake_labels.max()) + 1 if class_names is None else len(class_names))
            fake_batches = zip(fake.split(batch_size), digits[fake_labels.long()].split(batch_size))
            sample_labels = "given with the images"
        else:
            fake_batches = ((images, None) for images in fake.split(batch_size))
    else:
        if fake_labels is not None:
            raise ValueError("fake_labels applies to an image tensor; a model is sampled with balanced labels.")
        fake, fake_source = open_model(fake, device)
        sample_seed = seed
        num_classes = int(getattr(fake, "num_classes", 0) or 0)
        if num_classes:
            digits = digit_of_label(class_names, num_classes)
            labels = balanced_labels(num_samples, num_classes)
            images = generated_batches(fake, num_samples, batch_size, seed, labels=labels)
            fake_batches = zip(images, digits[labels].split(batch_size))
            sample_labels = BALANCED_LABELS
        else:
            fake_batches = ((images, None) for images in generated_batches(fake, num_samples, batch_size, seed))
    for images, digits in fake_batches:
        evaluator.update_fake(images, digits)
    return evaluator.compute(
        split=batches[3], real_fingerprint=batches[2], sample_seed=sample_seed, fake_source=fake_source,
        sample_labels=sample_labels,
    )
