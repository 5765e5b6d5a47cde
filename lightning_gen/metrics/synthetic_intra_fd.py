"""Intra-class Fréchet distance (StudioGAN's intra-FID) between real and generated labelled images.

Per class, the Fréchet distance between the class's real and generated images in a feature space the library knows
(:func:`~lightning_gen.metrics.extractors.build_extractor`: Inception, DINOv2, ``"shapes"``, a registered name or a
module), computed with :class:`~lightning_gen.metrics.statistics.StandardFID`; reported per class and as the
unweighted mean over classes. Where it differs from FID: a generator that draws good images of the wrong class, or
of one style per class, is far from each class even when its overall distribution is close. Sources are opened as in
:mod:`~lightning_gen.metrics.synthetic_sources`; the classifier metrics (CAS, augmentation gain) are in
:mod:`~lightning_gen.metrics.synthetic`.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from lightning_gen.metrics.synthetic_classifier import resolve_device
from lightning_gen.metrics.synthetic_sources import (
    generate_labelled,
    is_model_source,
    labelled_images,
    load_generator,
    same_classes,
    stratified_subset_indices,
)

__all__ = ["IntraClassFDResult", "intra_class_frechet_distance"]


@dataclass(frozen=True)
class IntraClassFDResult:
    """Per-class Fréchet distances between real and generated images, and their unweighted mean (intra-FID)."""

    intra_fd: float  # mean over classes of per_class
    per_class: dict[str, float]  # class name (or index) -> Fréchet distance
    real_counts: dict[str, int]  # real images per class
    generated_counts: dict[str, int]  # generated images per class
    extractor: str  # registered name or "custom:<class>"
    weights_sha256: str
    standard: bool  # official weights of a named extractor
    extractor_numerics: dict[str, Any]
    sample_seed: int | None  # seed of the generated images when a model made them here
    generated_source: str
    real_source: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary."""
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)


def intra_class_frechet_distance(
    real: Any,
    generated: Any,
    *,
    extractor: Any = None,
    weights: Any = None,
    download: bool = True,
    num_per_class: int | None = None,
    sample_seed: int = 0,
    subset_seed: int = 0,
    image_size: int | None = None,
    channels: int = 3,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    num_workers: int = 0,
) -> IntraClassFDResult:
    """Intra-class Fréchet distance (StudioGAN's intra-FID): per class, the Fréchet distance between that class's
    real and generated images in the extractor's feature space; reported per class and as the unweighted mean.

    As in StudioGAN, a model generates as many images of each class as the real side has of it (or
    ``num_per_class``), so every per-class distance has the sample-size bias of its real count. With a random or
    custom extractor the values are not comparable with published ones (``standard`` says which).

    Args:
        real: Real labelled images (class-subfolder folder, labelled dataset, tensors).
        generated: A class-conditional model, ``.ckpt`` or zoo name, or labelled generated images (then a seeded
            subset of ``num_per_class`` per class when given, else all of each class).
        extractor: A registered extractor name (``None``: the FID Inception; ``"dinov2-vit-l-14"``, ``"shapes"``,
            ...), a :class:`~lightning_gen.metrics.features.FeatureExtractor`, or an ``nn.Module`` mapping uint8
            (N, 3, H, W) to (N, d).
        weights, download: Weights file of a named extractor, and whether it may be downloaded.
        num_per_class: Generated (and, for a labelled generated set, drawn) images per class.
        sample_seed: Seed of a model's images.
        subset_seed: Seed of subsets drawn from a labelled generated set.
        image_size, channels: How folders are decoded (default: native size, RGB).
        batch_size: Images per extractor batch.
        device: Where the extractor runs (``"auto"``: cuda when available).
        num_workers: Decoding processes for folders.

    Returns:
        :class:`IntraClassFDResult`.

    Raises:
        ValueError: A class has fewer than 2 images on a side (a covariance needs 2).
    """
    from lightning_gen.metrics.extractors import build_extractor
    from lightning_gen.metrics.statistics import StandardFID

    read = dict(image_size=image_size, channels=channels, num_workers=num_workers)
    real_set = labelled_images(real, "real", **read)
    k = real_set.num_classes
    counts = real_set.class_counts(k)
    wanted = [num_per_class or count for count in counts]
    notes: list[str] = []
    seed_used = None
    if is_model_source(generated):
        model = load_generator(generated, resolve_device(device))
        labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(wanted)])
        fake = generate_labelled(model, labels, seed=sample_seed, description=f"generated by {type(model).__name__}")
        seed_used = sample_seed
    else:
        fake = labelled_images(generated, "generated", **read)
        if not same_classes(fake.class_names, real_set.class_names):
            raise ValueError(f"The class folders differ: {list(fake.class_names)} generated, {list(real_set.class_names)} real.")
        if num_per_class is not None:
            fake = fake.subset(stratified_subset_indices(fake.labels, per_class=num_per_class, seed=subset_seed))
    fake_counts = fake.class_counts(k)
    if fake_counts != wanted:
        notes.append(
            f"generated images per class {fake_counts} differ from {wanted}; each class's FD is biased by its own "
            f"sample counts, so compare only runs with the same counts"
        )
    names = list(real_set.class_names) if real_set.class_names else [str(c) for c in range(k)]
    for c, name in enumerate(names):
        if min(counts[c], fake_counts[c]) < 2:
            raise ValueError(
                f"Class {name!r} has {counts[c]} real and {fake_counts[c]} generated images; each side needs at least 2 "
                f"per class for a covariance."
            )
    network = build_extractor(extractor, weights=weights, download=download).to(resolve_device(device))

    def features(images: Tensor) -> Tensor:
        return torch.cat([network(chunk.to(network.device)).pool.cpu() for chunk in images.split(batch_size)])

    per_class = {}
    for c, name in enumerate(names):
        fid = StandardFID(num_features=network.dims[0])
        fid.update(features(real_set.of_class(c)), real=True)
        fid.update(features(fake.of_class(c)), real=False)
        per_class[name] = float(fid.compute())
    return IntraClassFDResult(
        intra_fd=statistics.fmean(per_class.values()), per_class=per_class, real_counts=dict(zip(names, counts)),
        generated_counts=dict(zip(names, fake_counts)), extractor=network.name, weights_sha256=network.fingerprint,
        standard=network.standard, extractor_numerics=network.numerics(), sample_seed=seed_used,
        generated_source=fake.description, real_source=real_set.description, notes=notes,
    )
