"""Labelled images for the synthetic-data metrics: read from folders, datasets, data modules, tensors or a model.

Every real or generated set becomes one :class:`LabelledImages`: uint8 images (N, C, H, W) and int64 labels, held
in memory (N * C * H * W bytes: 4 MiB for 4,000 32 px digits, 150 MiB for 50,000 32 px RGB images). Sources:

* a class-subfolder image folder (``Path`` or ``str``), read with the data modules' decoder, the same files
  ``ImageFolderDataModule`` finds; labels follow the sorted class-folder names;
* a map-style dataset whose items start with ``(uint8 image (C, H, W), int label)``, e.g. a data module's split
  (:func:`datamodule_split` reads one as its loader decodes it, without random flips);
* ``(images, labels)`` tensors;
* for the generated side also a class-conditional model with ``sample(n, seed, labels)`` (``GANModule``, ``VAE``),
  a ``.ckpt``, a zoo name or a Hub-format folder (:func:`generate_labelled`).

:func:`stratified_subset_indices` draws the seeded per-class subsets behind ``num_samples``, ``per_class`` and
``real_per_class``; use it to train a generator on exactly the real subset a small-data baseline sees.
Nothing here trains or scores anything.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_gen._images import to_uint8

__all__ = [
    "LabelledImages",
    "same_classes",
    "datamodule_split",
    "generate_labelled",
    "held_out_split",
    "is_model_source",
    "labelled_images",
    "stratified_subset_indices",
]


@dataclass(frozen=True)
class LabelledImages:
    """Images with class labels, all in memory.

    Example:
        >>> data = LabelledImages(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 1, 2]), "toy")
        >>> len(data), data.class_counts(3)
        (4, [1, 2, 1])
    """

    images: Tensor  # uint8 (N, C, H, W)
    labels: Tensor  # int64 (N,), class indices
    description: str  # where they came from, recorded in results
    class_names: tuple[str, ...] | None = None  # class-folder names of a folder source (label i = name i)

    def __post_init__(self) -> None:
        images, labels = self.images, torch.as_tensor(self.labels)
        if not isinstance(images, Tensor) or images.dim() != 4:
            raise ValueError(f"{self.description}: images must be a (N, C, H, W) tensor, got {getattr(images, 'shape', type(images))}.")
        if images.dtype != torch.uint8:
            images = to_uint8(images)  # float images are read as [-1, 1], like every metric of the library
        if labels.dim() != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
            raise ValueError(
                f"{self.description}: labels must be N = {images.shape[0]} integers, got shape {tuple(labels.shape)} "
                f"({labels.dtype})."
            )
        if labels.numel() and int(labels.min()) < 0:
            raise ValueError(f"{self.description}: labels must be >= 0 class indices, got {int(labels.min())}; unlabelled data cannot be used.")
        object.__setattr__(self, "images", images.cpu())
        object.__setattr__(self, "labels", labels.to(torch.long).cpu())

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        """Number of classes: the class folders, else the largest label + 1."""
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self) else 0

    def class_counts(self, num_classes: int) -> list[int]:
        """Images per class, for classes ``0 .. num_classes - 1``."""
        return torch.bincount(self.labels, minlength=num_classes).tolist()

    def subset(self, indices: Sequence[int], description: str | None = None) -> LabelledImages:
        """The items at ``indices``, in that order."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return LabelledImages(self.images[index], self.labels[index], description or self.description, self.class_names)

    def of_class(self, label: int) -> Tensor:
        """The images of class ``label``."""
        return self.images[self.labels == label]


def same_classes(names: Sequence[str] | None, others: Sequence[str] | None) -> bool:
    """Whether two class-name lists describe the same labels (unknown names match anything; ``"07"`` is ``"7"``).

    Example:
        >>> same_classes(["0", "1"], ["00", "01"]), same_classes(["cat", "dog"], ["dog", "cat"])
        (True, False)
    """
    if names is None or others is None:
        return True
    if all(n.isdigit() for n in [*names, *others]):
        return [int(n) for n in names] == [int(n) for n in others]
    return list(names) == list(others)


def stratified_subset_indices(
    labels: Tensor | Sequence[int], *, per_class: int | None = None, total: int | None = None, seed: int = 0
) -> list[int]:
    """Sorted indices of a seeded subset drawn class by class.

    ``per_class=k`` takes ``k`` items of every class (an error names a class with fewer). ``total=n`` keeps the
    class proportions: ``n`` split over classes by largest remainder. Within a class the items are a uniform draw
    (``numpy.random.default_rng(seed + label)``), so the same labels and seed always give the same subset, and a
    subset covering everything is ``range(len(labels))``.

    Example:
        >>> stratified_subset_indices([0, 0, 0, 1, 1, 1], per_class=1, seed=0)
        [2, 4]
        >>> stratified_subset_indices([0, 0, 1, 1], total=4)
        [0, 1, 2, 3]
    """
    labels = np.asarray(torch.as_tensor(labels).cpu().numpy(), dtype=np.int64)
    if (per_class is None) == (total is None):
        raise ValueError(f"Give exactly one of per_class ({per_class!r}) and total ({total!r}).")
    classes, counts = np.unique(labels, return_counts=True)
    if per_class is not None:
        if per_class < 0:
            raise ValueError(f"per_class must be >= 0, got {per_class}.")
        short = [(int(c), int(n)) for c, n in zip(classes, counts) if n < per_class]
        if short:
            raise ValueError(
                f"per_class={per_class} but class {short[0][0]} has only {short[0][1]} images "
                f"({len(short)} class(es) too small); lower per_class or add images."
            )
        wanted = dict.fromkeys(classes.tolist(), per_class)
    else:
        if not 0 <= total <= labels.shape[0]:
            raise ValueError(f"total={total} must be between 0 and the {labels.shape[0]} images available.")
        exact = counts * total / max(labels.shape[0], 1)
        allotted = np.floor(exact).astype(np.int64)
        # Largest remainders get the images left over; ties go to the lower class index (stable sort).
        for position in np.argsort(-(exact - allotted), kind="stable")[: total - int(allotted.sum())]:
            allotted[position] += 1
        wanted = dict(zip(classes.tolist(), allotted.tolist()))
    chosen: list[int] = []
    for label, count in wanted.items():
        members = np.flatnonzero(labels == label)
        if count >= members.shape[0]:
            chosen.extend(members.tolist())
        else:
            chosen.extend(np.random.default_rng(seed + int(label)).choice(members, size=count, replace=False).tolist())
    return sorted(int(i) for i in chosen)


# ------------------------------------------------------------------------------------------------- reading


class _LabelledFiles(Dataset):
    """Files of a class-subfolder folder, decoded like ``ImageFolderDataModule``; bad files give ``None``."""

    def __init__(self, paths: list[str], labels: list[int], image_size: int | None, channels: int) -> None:
        self.paths, self.labels, self.image_size, self.channels = paths, labels, image_size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor | None, int, str]:
        from lightning_gen.data import decoding

        path = self.paths[index]
        try:
            if self.image_size is None:
                array = np.array(decoding.load_image(path, self.channels))  # a writable copy
                array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
            else:
                array = decoding.decode_image(path, self.image_size, self.channels)
        except Exception as error:  # noqa: BLE001 - every failure means a bad file, reported by name
            return None, self.labels[index], f"{path} ({decoding._describe_error(error, path)})"
        return torch.from_numpy(np.ascontiguousarray(array)), self.labels[index], path


def _keep_list(samples: list) -> list:
    return samples


def _read_folder(folder: Path, *, image_size: int | None, channels: int, num_workers: int, recursive: bool) -> LabelledImages:
    from lightning_gen.data import scan_image_folder

    index = scan_image_folder(folder, recursive=recursive)
    if not index.class_names:
        raise ValueError(
            f"{folder} has no class subfolders, so its images have no labels. Put each class's images in its own "
            f"subfolder (e.g. {folder}/0/, {folder}/1/, ...), as `lightning-gen sample --out-dir DIR --per-class N` writes them."
        )
    dataset = _LabelledFiles([str(folder / r.relpath) for r in index.records], [r.label for r in index.records], image_size, channels)
    images, labels, bad = [], [], [reason for _, reason in index.rejected]
    loader = DataLoader(dataset, batch_size=64, num_workers=num_workers, collate_fn=_keep_list)
    for samples in loader:
        for image, label, path in samples:
            if image is None:
                bad.append(path)
            else:
                images.append(image)
                labels.append(label)
    if bad:
        warnings.warn(f"Left out {len(bad)} unreadable image file(s) of {folder}, e.g. {bad[0]}", stacklevel=3)
    if not images:
        raise ValueError(f"{folder} has no readable images in its class subfolders.")
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"The images of {folder} have different sizes ({sorted(shapes)[:3]}, ...); give image_size (the CLI's "
            f"--image-size) to resize them as ImageFolderDataModule does."
        )
    return LabelledImages(torch.stack(images), torch.tensor(labels), str(folder), tuple(index.class_names))


def _read_dataset(dataset: Dataset, description: str, num_workers: int) -> LabelledImages:
    images, labels = [], []
    for item in DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers):
        if not (isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[0], Tensor)):
            raise TypeError(
                f"{description}: items must start with (image (C, H, W) tensor, int label), got {type(item).__name__}; "
                f"an unlabelled dataset cannot be used for the synthetic-data metrics."
            )
        images.append(to_uint8(item[0]))
        labels.append(int(item[1]))
    if not images:
        raise ValueError(f"{description} is empty.")
    return LabelledImages(torch.stack(images), torch.tensor(labels), description)


def is_model_source(spec: Any) -> bool:
    """Whether ``spec`` is a generator (module with ``sample``, ``.ckpt``, zoo name, Hub folder) rather than images."""
    if callable(getattr(spec, "sample", None)):
        return True
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        # A folder is images unless it is a Hub-format model folder; anything else names a .ckpt or a zoo model.
        return (path / "config.json").is_file() if path.is_dir() else True
    return False


def labelled_images(
    spec: Any,
    role: str = "real",
    *,
    image_size: int | None = None,
    channels: int = 3,
    num_workers: int = 0,
    recursive: bool = True,
) -> LabelledImages:
    """Open a labelled image set.

    Args:
        spec: A class-subfolder folder (``str`` or ``Path``), a map-style dataset of ``(uint8 image, label, ...)``
            items, ``(images, labels)`` tensors, or a :class:`LabelledImages` (returned as it is).
        role: Name used in messages and descriptions (``"real test"``, ``"generated"``, ...).
        image_size: Folders only: resize like ``ImageFolderDataModule(image_size=...)`` (shorter side, centre
            crop); ``None`` keeps their native size (which must then be the same for every file).
        channels: Folders only: decode to 1 (grayscale) or 3 (RGB) channels.
        num_workers: Decoding processes for folders and datasets.
        recursive: Folders only: also read images nested below the class folders.

    Raises:
        FileNotFoundError: A path that does not exist.
        ValueError, TypeError: The source has no labels or is not a kind listed above (the message says which).
    """
    if isinstance(spec, LabelledImages):
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and all(isinstance(t, Tensor) for t in spec):
        return LabelledImages(spec[0], spec[1], f"{role} tensors")
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"The {role} images {str(spec)!r} do not exist; expected a folder with one subfolder per class.")
        if not path.is_dir():
            raise ValueError(f"The {role} images {str(spec)!r} must be a folder with one subfolder per class, got a file.")
        return _read_folder(path, image_size=image_size, channels=channels, num_workers=num_workers, recursive=recursive)
    if isinstance(spec, Dataset) or (hasattr(spec, "__getitem__") and hasattr(spec, "__len__")):
        return _read_dataset(spec, f"{role} {type(spec).__name__}", num_workers)
    raise TypeError(
        f"Cannot read {role} labelled images from {type(spec).__name__}; expected a class-subfolder folder, a "
        f"dataset of (uint8 image, label) items, (images, labels) tensors or LabelledImages."
    )


def datamodule_split(datamodule: Any, split: str, *, num_workers: int | None = None) -> LabelledImages:
    """A data module's split as labelled images, read in order and without random flips.

    The split's dataset is read by plain index (the library's training datasets then give the images as stored;
    flips belong to the training sampler's keys), with the loader's own collate function.

    Args:
        datamodule: A set-up ``LightningDataModule`` with ``<split>_dataloader()`` over a labelled map-style dataset.
        split: ``"train"``, ``"val"``, ``"test"``, ...
        num_workers: Decoding processes (default: the loader's).

    Raises:
        ValueError: The split has no loader, is empty, is a stream or has no labels.
    """
    name = f"{type(datamodule).__name__}:{split}"
    make_loader = getattr(datamodule, f"{split}_dataloader", None)
    try:
        loader = make_loader() if callable(make_loader) else None
    except Exception as error:  # noqa: BLE001 - Lightning's placeholder hooks raise MisconfigurationException
        raise ValueError(f"{name}: {type(datamodule).__name__}.{split}_dataloader() failed ({error}).") from error
    if not isinstance(loader, DataLoader) or not hasattr(loader.dataset, "__len__") or len(loader.dataset) == 0:
        raise ValueError(
            f"{name} has no images in a map-style DataLoader. Held-out metrics need held-out images: give the data "
            f"module a validation or test split (e.g. ImageFolderDataModule(val_fraction=0.1)) or pick another split."
        )
    reader = DataLoader(
        loader.dataset, batch_size=256, shuffle=False, collate_fn=loader.collate_fn,
        num_workers=loader.num_workers if num_workers is None else num_workers,
    )
    images, labels = [], []
    for batch in reader:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[1], Tensor)):
            raise ValueError(f"{name} yields no labels; the synthetic-data metrics need a labelled (class) data set.")
        images.append(to_uint8(batch[0]))
        labels.append(batch[1])
    return LabelledImages(torch.cat(images), torch.cat(labels), name, tuple(getattr(datamodule, "class_names", None) or ()) or None)


def held_out_split(datamodule: Any) -> str:
    """``"test"`` when the data module yields a non-empty test loader, else ``"val"``: the split to score on."""
    try:
        loader = datamodule.test_dataloader()
    except Exception:  # noqa: BLE001 - Lightning's placeholder hook raises when a data module has no test split
        return "val"
    return "test" if isinstance(loader, DataLoader) and len(loader.dataset) else "val"


# ---------------------------------------------------------------------------------------------- generation


def load_generator(spec: Any, device: str | torch.device = "cpu") -> Any:
    """A module with ``sample(n, seed, labels)``: ``spec`` itself, or loaded from a ``.ckpt``/zoo name/Hub folder."""
    if callable(getattr(spec, "sample", None)):
        return spec
    from lightning_gen.sampling import load_generative_module  # loading models pulls in the training stack

    text = os.fspath(spec)
    try:
        return load_generative_module(text, device)
    except Exception as error:  # noqa: BLE001 - a typo in a folder name should not read as a Hub failure only
        if Path(text).exists() or text.endswith(".ckpt"):
            raise
        raise LookupError(
            f"{text!r} is neither a folder of generated images (one subfolder per class) nor a model that loads as "
            f"a .ckpt, zoo name or Hub id ({type(error).__name__}: {error}). Check the path."
        ) from error


def generate_labelled(
    model: Any, labels: Tensor, *, seed: int, batch_size: int = 256, description: str | None = None
) -> LabelledImages:
    """Images of ``model`` for the given class labels, quantised to uint8 by rounding.

    A model with ``iter_samples`` (the library's modules) draws all latents from ``seed`` at once, so the images
    do not depend on ``batch_size``; other models are called as ``sample(size, seed=seed + b, labels=...)`` for
    batch ``b``.

    Raises:
        TypeError: The model is unconditional (``num_classes`` 0) or has no ``sample``.
    """
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    name = description or f"generated by {type(model).__name__}"
    if not callable(getattr(model, "sample", None)) or num_classes < 1:
        raise TypeError(
            f"{name}: the synthetic-data metrics need a class-conditional model (num_classes > 0, e.g. "
            f"GANModule(num_classes=10)) with sample(n, seed, labels), or a folder of generated images in class subfolders."
        )
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f"{name}: labels reach {int(labels.max())} but the model has num_classes={num_classes}.")
    chunks = []
    with torch.no_grad():
        if callable(getattr(model, "iter_samples", None)):
            chunks = [to_uint8(chunk).cpu() for chunk in model.iter_samples(labels.numel(), seed=seed, labels=labels, batch_size=batch_size)]
        else:
            for b, start in enumerate(range(0, labels.numel(), batch_size)):
                part = labels[start : start + batch_size]
                chunks.append(to_uint8(model.sample(part.numel(), seed=seed + b, labels=part)).cpu())
    return LabelledImages(torch.cat(chunks), labels, name)
