"""Is synthetic data useful? CAS, augmentation gain and intra-class Fréchet distance for class-conditional models.

* :func:`classification_accuracy_score`: **CAS** (Ravuri & Vinyals 2019, "Classification Accuracy Score for
  Conditional Generative Models"): a fixed classifier trained on N generated labelled images only, scored on real
  held-out images, beside the same classifier trained on as many real training images (the reference).
* :func:`augmentation_gain`: the classifier trained on the real training set alone vs on it plus M synthetic images
  per class, both scored on the real held-out images; optionally in a small-data regime (``real_per_class``).
* :func:`~lightning_gen.metrics.synthetic_intra_fd.intra_class_frechet_distance` (its own file): StudioGAN's
  intra-FID, the Fréchet distance between each class's real and generated images in any registered feature space,
  averaged over classes, with the per-class values.

The classifier and how it is trained are fixed by a
:class:`~lightning_gen.metrics.synthetic_classifier.ClassifierProtocol` recorded in every result; accuracies are
reported per seed, as a mean and a sample standard deviation over seeds. Real and generated sides are anything
:func:`~lightning_gen.metrics.synthetic_sources.labelled_images` opens (class-subfolder folders, labelled datasets,
tensors); the generated side may also be a class-conditional model, ``.ckpt`` or zoo name. During training,
:class:`~lightning_gen.metrics.synthetic_callback.CASCallback` logs CAS; ``lightning-gen synthetic`` is the command.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from lightning_gen.metrics.synthetic_classifier import (
    ClassifierFactory,
    ClassifierProtocol,
    architecture_name,
    classifier_accuracy,
    conform_images,
    resolve_device,
    train_classifier,
)
from lightning_gen.metrics.synthetic_sources import (
    LabelledImages,
    generate_labelled,
    is_model_source,
    labelled_images,
    load_generator,
    same_classes,
    stratified_subset_indices,
)

__all__ = [
    "AugmentationGainResult",
    "CASResult",
    "augmentation_gain",
    "balanced_labels",
    "classification_accuracy_score",
]


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """``n`` labels cycling through the classes (each gets ``n // K`` or one more), as ``sample`` draws by default.

    Example:
        >>> balanced_labels(5, 3).tolist()
        [0, 1, 2, 0, 1]
    """
    return torch.arange(n) % num_classes


def _spread(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof 1; ``None`` for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


class _JSONResult:
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary (the protocol under ``"protocol"``)."""
        record = asdict(self)
        if "protocol" in record:
            record["protocol"] = self.protocol.to_dict()
        return record

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)


@dataclass(frozen=True)
class CASResult(_JSONResult):
    """Classification Accuracy Score with its real-trained reference, per seed and over seeds."""

    cas: float  # mean accuracy on the real test set of classifiers trained on generated images only
    cas_std: float | None  # sample std over seeds (None with one seed)
    cas_per_seed: list[float]  # in the order of protocol.seeds
    real_reference: float | None  # the same with as many real training images (None without real_train)
    real_reference_std: float | None
    real_reference_per_seed: list[float] | None
    protocol: ClassifierProtocol  # resolved: N, seeds, input size and channels, device
    num_classes: int
    num_generated: int  # training images of the CAS classifiers
    num_real_reference: int | None  # training images of the reference classifiers
    num_real_test: int  # images both are scored on
    generated_source: str
    real_test_source: str
    real_train_source: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float | None:
        """``real_reference - cas``: how much accuracy training on generated instead of real images costs."""
        return None if self.real_reference is None else self.real_reference - self.cas

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary, with ``gap`` and the protocol under ``"protocol"``."""
        return {**super().to_dict(), "gap": self.gap}


@dataclass(frozen=True)
class AugmentationGainResult(_JSONResult):
    """Real-only vs real + synthetic training, both scored on the real test set, per seed and over seeds.

    ``exceeds_seed_spread`` is true when ``|gain| > gain_spread = sqrt(real_only_std² + augmented_std²)``: the
    difference of the means is larger than the typical seed-to-seed difference between one real-only and one
    augmented classifier (``None`` with a single seed). With a handful of seeds this is a screen, not a
    significance test; ``gain_per_seed`` gives the paired differences (same seed, same initialisation).
    """

    gain: float  # augmented - real_only (means over seeds)
    gain_spread: float | None  # sqrt(real_only_std^2 + augmented_std^2)
    exceeds_seed_spread: bool | None  # |gain| > gain_spread
    gain_per_seed: list[float]  # paired: augmented - real_only for each seed
    real_only: float
    real_only_std: float | None
    real_only_per_seed: list[float]
    augmented: float
    augmented_std: float | None
    augmented_per_seed: list[float]
    regime: str  # "full training set" or "<k> real per class"
    protocol: ClassifierProtocol  # resolved; per_class = M, real_per_class
    num_classes: int
    num_real_train: int  # real images in both training sets
    num_synthetic: int  # synthetic images added (M per class)
    num_real_test: int
    generated_source: str | None
    real_test_source: str
    real_train_source: str
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ shared steps


def _override(protocol: ClassifierProtocol | None, **values: Any) -> ClassifierProtocol:
    protocol = protocol or ClassifierProtocol()
    given = {key: value for key, value in values.items() if value is not None}
    return replace(protocol, **given) if given else protocol


class _Setting:
    """The real sides read, the protocol resolved, and a classifier scorer over the protocol's seeds."""

    def __init__(self, protocol: ClassifierProtocol, factory: ClassifierFactory | None, real_test: Any,
                 real_train: Any, num_workers: int) -> None:
        self.test = labelled_images(real_test, "real test", image_size=protocol.image_size,
                                    channels=protocol.channels or 3, num_workers=num_workers)
        height, width = self.test.images.shape[-2:]
        if protocol.image_size is None and height != width:
            raise ValueError(f"The real test images are {height}x{width}; give the protocol an image_size to resize them to a square.")
        self.protocol = protocol.resolved(
            image_size=width, channels=self.test.images.shape[1], device=resolve_device(protocol.device),
            architecture=architecture_name(protocol, factory),
        )
        # Other folders are decoded straight to the classifier's input (the decoder's resize, not a second one).
        self.read = dict(image_size=self.protocol.image_size, channels=self.protocol.channels, num_workers=num_workers)
        self.train = None if real_train is None else labelled_images(real_train, "real train", **self.read)
        self.factory = factory
        self.num_classes = max(s.num_classes for s in (self.test, self.train) if s is not None)
        self._check_names(self.train)
        self._test_images = self.conform(self.test)

    def _check_names(self, other: LabelledImages | None) -> None:
        if other is not None and not same_classes(other.class_names, self.test.class_names):
            raise ValueError(
                f"The class folders differ: {other.description} has {list(other.class_names)}, {self.test.description} "
                f"has {list(self.test.class_names)}; labels follow the sorted folder names, so they must be the same."
            )

    def open_generated(self, spec: Any) -> LabelledImages:
        generated = labelled_images(spec, "generated", **self.read)
        self._check_names(generated)
        return generated

    def conform(self, data: LabelledImages) -> Tensor:
        return conform_images(data.images, self.protocol.image_size, self.protocol.channels)

    def conformed(self, data: LabelledImages) -> LabelledImages:
        return replace(data, images=self.conform(data))

    def accuracies(self, data: LabelledImages) -> list[float]:
        images = self.conform(data)
        values = []
        for seed in self.protocol.seeds:
            network = train_classifier(
                images, data.labels, num_classes=self.num_classes, protocol=self.protocol, seed=seed,
                classifier_factory=self.factory,
            )
            values.append(classifier_accuracy(
                network, self._test_images, self.test.labels, batch_size=self.protocol.eval_batch_size,
                cpu_threads=self.protocol.cpu_threads,
            ))
        return values


def _draw_generated(
    setting: _Setting, generated: Any, *, per_class: int | None = None, total: int | None = None,
    labels: Tensor | None = None,
) -> LabelledImages:
    """Generated training images: ``per_class`` of every class, or ``total`` (a model draws ``labels``, default
    balanced; a labelled set gives a seeded stratified subset keeping its class proportions)."""
    protocol, k = setting.protocol, setting.num_classes
    if is_model_source(generated):
        model = load_generator(generated, protocol.device)
        if int(getattr(model, "num_classes", 0) or 0) not in (0, k):  # 0: generate_labelled explains
            raise ValueError(f"The model has num_classes={model.num_classes} but the real data has {k} classes.")
        if labels is None:
            labels = torch.arange(k).repeat_interleave(per_class) if per_class is not None else balanced_labels(total, k)
        return generate_labelled(model, labels, seed=protocol.sample_seed, description=f"generated by {_describe(generated)}")
    if labels is not None:
        raise ValueError("labels applies to a model; a labelled set of generated images brings its own labels.")
    pool = setting.open_generated(generated)
    have = pool.class_counts(k)
    if per_class is not None and min(have) < per_class:
        c = have.index(min(have))
        raise ValueError(f"{pool.description} has {have[c]} images of class {c}, per_class={per_class} needed; generate more or lower per_class.")
    if total is not None and total > len(pool):
        raise ValueError(f"num_samples={total} but {pool.description} has only {len(pool)} images; generate more or lower num_samples.")
    chosen = stratified_subset_indices(pool.labels, per_class=per_class, total=total, seed=protocol.subset_seed)
    if len(chosen) == len(pool):
        return pool  # all of it, in its own order
    return pool.subset(chosen, f"{pool.description} ({len(chosen)} drawn, stratified, seed {protocol.subset_seed})")


def _describe(spec: Any) -> str:
    return type(spec).__name__ if callable(getattr(spec, "sample", None)) else str(spec)


# ------------------------------------------------------------------------------------------------------ metrics


def classification_accuracy_score(
    generated: Any,
    real_test: Any,
    real_train: Any = None,
    *,
    num_samples: int | None = None,
    seeds: Sequence[int] | None = None,
    protocol: ClassifierProtocol | None = None,
    classifier_factory: ClassifierFactory | None = None,
    labels: Tensor | None = None,
    num_workers: int = 0,
) -> CASResult:
    """Classification Accuracy Score (CAS, Ravuri & Vinyals 2019) of a class-conditional generator.

    Trains the protocol's classifier on N generated labelled images only and scores it on ``real_test``; with
    ``real_train``, trains the same classifier (same seeds, same steps) on N real training images (a stratified
    subset keeping the class proportions when there are more) as the reference. A CAS close to the reference means
    the generated images carry what a classifier needs from the real ones.

    Args:
        generated: A class-conditional model (``sample(n, seed, labels)``, ``num_classes`` > 0), a ``.ckpt`` or zoo
            name, or labelled generated images (class-subfolder folder, dataset, tensors). A model draws
            ``balanced_labels(N, K)`` (or ``labels``) with ``protocol.sample_seed``; from a labelled set a stratified
            subset of N is used.
        real_test: Real held-out labelled images (never trained on).
        real_train: Real training images for the reference; ``None`` skips it.
        num_samples: N (overrides ``protocol.num_samples``); default: as many as ``real_train`` has, else all of
            a labelled ``generated`` set.
        seeds: Classifier seeds (overrides ``protocol.seeds``).
        protocol: The classifier protocol (default :class:`ClassifierProtocol`); recorded resolved in the result.
        classifier_factory: ``factory(num_classes, channels, image_size) -> nn.Module`` instead of ``SmallCNN``.
        labels: The N labels to generate for a model (default balanced over classes).
        num_workers: Decoding processes for folders.

    Returns:
        :class:`CASResult`.

    Example:
        >>> import torch
        >>> from lightning_gen.metrics import ClassifierProtocol
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.arange(40) % 2
        >>> images = (labels.view(-1, 1, 1, 1) * 200 + torch.randint(0, 50, (40, 1, 8, 8), generator=g)).to(torch.uint8)
        >>> result = classification_accuracy_score((images, labels), (images, labels), (images, labels),
        ...                                        protocol=ClassifierProtocol(steps=5, seeds=(0, 1)))
        >>> result.cas == result.real_reference, result.protocol.num_samples
        (True, 40)
    """
    protocol = _override(protocol, num_samples=num_samples, seeds=tuple(seeds) if seeds is not None else None)
    setting = _Setting(protocol, classifier_factory, real_test, real_train, num_workers)
    notes: list[str] = []
    n = setting.protocol.num_samples
    if n is None and setting.train is not None:
        n = len(setting.train)
    elif n is None and not is_model_source(generated):
        generated = setting.open_generated(generated)  # read once: its size is N
        n = len(generated)
    elif n is None:
        raise ValueError("num_samples is needed when there is no real_train to match and the generated side is a model.")
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != (n,):
            raise ValueError(f"labels must hold num_samples={n} class indices, got shape {tuple(labels.shape)}.")
    setting.protocol = replace(setting.protocol, num_samples=n)
    synthetic = _draw_generated(setting, generated, total=n, labels=labels)
    cas = setting.accuracies(synthetic)

    reference = reference_count = None
    if setting.train is not None:
        reference_count = min(n, len(setting.train))
        if reference_count < n:
            notes.append(f"the reference trained on all {reference_count} real training images, fewer than N = {n}")
        chosen = stratified_subset_indices(setting.train.labels, total=reference_count, seed=setting.protocol.subset_seed)
        reference = setting.accuracies(setting.train.subset(chosen))
    cas_mean, cas_std = _spread(cas)
    ref_mean, ref_std = _spread(reference) if reference else (None, None)
    return CASResult(
        cas=cas_mean, cas_std=cas_std, cas_per_seed=cas, real_reference=ref_mean, real_reference_std=ref_std,
        real_reference_per_seed=reference, protocol=setting.protocol, num_classes=setting.num_classes,
        num_generated=len(synthetic), num_real_reference=reference_count, num_real_test=len(setting.test),
        generated_source=synthetic.description, real_test_source=setting.test.description,
        real_train_source=None if setting.train is None else setting.train.description, notes=notes,
    )


def augmentation_gain(
    generated: Any,
    real_train: Any,
    real_test: Any,
    *,
    per_class: int | None = None,
    real_per_class: int | None = None,
    seeds: Sequence[int] | None = None,
    protocol: ClassifierProtocol | None = None,
    classifier_factory: ClassifierFactory | None = None,
    num_workers: int = 0,
) -> AugmentationGainResult:
    """Does adding synthetic images to the real training set help the classifier on real test images?

    Trains the protocol's classifier, once per seed, on the real training images alone and on the same images plus
    M synthetic images per class (same number of steps: the data differs, not the schedule), and scores both on
    ``real_test``. The gain is ``mean(augmented) - mean(real_only)``; it **exceeds the seed spread** when
    ``|gain| > sqrt(real_only_std² + augmented_std²)`` (sample stds over seeds; see :class:`AugmentationGainResult`).

    Args:
        generated: A class-conditional model, ``.ckpt`` or zoo name (``per_class`` images of every class drawn with
            ``protocol.sample_seed``) or labelled generated images (a seeded ``per_class`` subset of each class).
            Not read when ``per_class`` is 0.
        real_train: Real training images.
        real_test: Real held-out images.
        per_class: M, synthetic images per class (overrides ``protocol.per_class``; required one way or the other).
        real_per_class: Use only this many real training images per class (a seeded stratified subset,
            :func:`~lightning_gen.metrics.synthetic_sources.stratified_subset_indices` with
            ``protocol.subset_seed``): the small-data regime. Train the generator on that same subset, so the
            synthetic images carry nothing the baseline did not see.
        seeds: Classifier seeds (overrides ``protocol.seeds``).
        protocol: The classifier protocol; recorded resolved in the result.
        classifier_factory: ``factory(num_classes, channels, image_size) -> nn.Module`` instead of ``SmallCNN``.
        num_workers: Decoding processes for folders.

    Returns:
        :class:`AugmentationGainResult`.
    """
    protocol = _override(protocol, per_class=per_class, real_per_class=real_per_class,
                         seeds=tuple(seeds) if seeds is not None else None)
    if protocol.per_class is None:
        raise ValueError("Give per_class (M synthetic images per class; 0 measures nothing but the seeds' noise).")
    setting = _Setting(protocol, classifier_factory, real_test, real_train, num_workers)
    protocol = setting.protocol
    base = setting.train
    if protocol.real_per_class is not None:
        chosen = stratified_subset_indices(base.labels, per_class=protocol.real_per_class, seed=protocol.subset_seed)
        base = base.subset(chosen, f"{base.description} ({protocol.real_per_class} per class, seed {protocol.subset_seed})")
    if protocol.per_class:
        synthetic = setting.conformed(_draw_generated(setting, generated, per_class=protocol.per_class))
        source = synthetic.description
    else:  # nothing added: the augmented training set is the real one, image for image
        synthetic, source = LabelledImages(base.images[:0], base.labels[:0], "no synthetic images"), None
    base = setting.conformed(base)
    augmented = LabelledImages(
        torch.cat([base.images, synthetic.images]), torch.cat([base.labels, synthetic.labels]),
        f"{base.description} + {len(synthetic)} synthetic",
    )
    real_only = setting.accuracies(base)
    boosted = setting.accuracies(augmented)
    real_mean, real_std = _spread(real_only)
    aug_mean, aug_std = _spread(boosted)
    gain = aug_mean - real_mean
    spread = math.sqrt(real_std**2 + aug_std**2) if real_std is not None else None
    return AugmentationGainResult(
        gain=gain, gain_spread=spread, exceeds_seed_spread=None if spread is None else abs(gain) > spread,
        gain_per_seed=[a - r for a, r in zip(boosted, real_only)], real_only=real_mean, real_only_std=real_std,
        real_only_per_seed=real_only, augmented=aug_mean, augmented_std=aug_std, augmented_per_seed=boosted,
        regime="full training set" if protocol.real_per_class is None else f"{protocol.real_per_class} real per class",
        protocol=protocol, num_classes=setting.num_classes, num_real_train=len(base), num_synthetic=len(synthetic),
        num_real_test=len(setting.test), generated_source=source, real_test_source=setting.test.description,
        real_train_source=base.description,
    )

