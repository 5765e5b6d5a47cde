"""Real handwritten digits, built in: 5,000 MNIST digits that ship with the package, or the full MNIST you have.

The package carries 5,000 MNIST digits (500 per class, 28x28 grayscale; CC BY-SA 3.0, see ``mnist/README.md``), so
a fresh clone trains a class-conditional GAN on real data with no download. They are split once and for all into
**400 training and 100 test digits per class** (:func:`digits_split_indices`: within each class, digits are ordered
by a hash of their position in the file and the first 100 are the test set). Every digits metric in the project
(conditional accuracy, CAS, digits FD) is measured on the test digits, which nothing trains on.

Sizes: ``image_size=28`` is MNIST's own; ``32`` pads 2 black pixels on each side (the usual way to fit MNIST to
power-of-two networks, keeping every stroke as drawn); any other size pads to 32 first and then resizes (bilinear,
antialiased), so e.g. 16 px digits are the 32 px ones downsampled. ``channels=3`` repeats the grey channel.
Loaders yield uint8 like the other data modules; flips are off by default (a mirrored 2 is not a 2).

**The full MNIST** (60,000 training and 10,000 test digits) when you have it: ``DigitsDataModule(root=...)`` reads
the four IDX files as torchvision's ``MNIST`` stores them (``root/MNIST/raw/train-images-idx3-ubyte[.gz]`` ...,
or the files directly in ``root``) with MNIST's official train/test split. Nothing is downloaded here. (An image
folder of digits, e.g. written by ``lightning-gen make-digits``, works with :class:`ImageFolderDataModule`.)

Example:
    >>> dm = DigitsDataModule(image_size=32, batch_size=8)
    >>> dm.setup("fit")
    >>> images, labels = next(iter(dm.train_dataloader()))
    >>> images.shape, images.dtype, len(dm.split_dataset("train")), len(dm.split_dataset("test"))
    (torch.Size([8, 1, 32, 32]), torch.uint8, 4000, 1000)
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lightning_gen._files import sha256_file
from lightning_gen.data._base import ImageDataModuleBase, check_positive_int
from lightning_gen.data._sampling import EpochItemDataset, derive_seed

__all__ = [
    "DIGIT_CLASSES",
    "MNIST_5K_FILE",
    "MNIST_5K_SHA256",
    "TEST_PER_CLASS",
    "DigitsDataModule",
    "DigitsDataset",
    "digits_split_indices",
    "load_digits",
    "make_digits_main",
    "per_class_subset",
    "prepare_digits",
    "write_digits_folder",
]

#: The shipped digits and their pinned sha256 (checked on every load).
MNIST_5K_FILE = Path(__file__).parent / "mnist" / "mnist_5k.npz"
MNIST_5K_SHA256 = "246e0c30eeea57c8d0037d3f38c8e00651ec204cc61b8022563e9aeeb9d756f4"
#: Class names, in label order.
DIGIT_CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
#: Test digits per class in the built-in split (the other 400 per class are for training).
TEST_PER_CLASS = 100
#: The splits a digits source has; ``"val"`` is the test split (the data modules' held-out loader).
SPLITS = ("train", "test")

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@functools.lru_cache(maxsize=4)
def _load_source(root: str | None) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """((images, labels) of the training split, (images, labels) of the test split), 28x28 uint8 and int64."""
    if root is None:
        digest = sha256_file(MNIST_5K_FILE)
        if digest != MNIST_5K_SHA256:
            raise RuntimeError(
                f"{MNIST_5K_FILE} has sha256 {digest}, expected {MNIST_5K_SHA256}: the package's digits are damaged. "
                "Reinstall lightning-gen."
            )
        with np.load(MNIST_5K_FILE) as data:
            images, labels = torch.from_numpy(data["images"].copy()), torch.from_numpy(data["labels"].astype(np.int64))
        return tuple((images[idx], labels[idx]) for idx in (digits_split_indices(labels, split) for split in SPLITS))
    return tuple(_read_idx_pair(Path(root), split) for split in SPLITS)


def load_digits(split: str = "train", root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """28x28 uint8 digits ``(N, 28, 28)`` and int64 labels ``(N,)`` of ``split`` (``"train"`` or ``"test"``).

    Args:
        split: ``"train"`` or ``"test"`` (``"val"`` means ``"test"``).
        root: ``None`` for the built-in 5,000 digits (4,000 / 1,000), or a folder with MNIST's IDX files
            (torchvision's layout ``root/MNIST/raw/`` or the files themselves; ``.gz`` or not).

    Example:
        >>> images, labels = load_digits("test")
        >>> images.shape, labels.bincount().tolist() == [100] * 10
        (torch.Size([1000, 28, 28]), True)
    """
    split = _check_split(split)
    return _load_source(None if root is None else str(root))[SPLITS.index(split)]


def digits_split_indices(labels: torch.Tensor, split: str, per_class: int = TEST_PER_CLASS) -> torch.Tensor:
    """Positions of the built-in split's digits: ``per_class`` test digits per class, the rest for training.

    Within each class, positions are ordered by :func:`~lightning_gen.data._sampling.derive_seed` of
    ``("digits-test", position)`` (a hash: no RNG whose stream could change between library versions), and the
    first ``per_class`` are the test set. Returned in file order.

    Example:
        >>> labels = torch.tensor([0, 0, 0, 1, 1, 1])
        >>> test = digits_split_indices(labels, "test", per_class=1)
        >>> labels[test].tolist(), len(digits_split_indices(labels, "train", per_class=1))
        ([0, 1], 4)
    """
    split = _check_split(split)
    test: list[int] = []
    for label in labels.unique().tolist():
        positions = (labels == label).nonzero().flatten().tolist()
        positions.sort(key=lambda position: derive_seed("digits-test", position))
        test += positions[:per_class]
    chosen = torch.zeros(len(labels), dtype=torch.bool)
    chosen[test] = True
    return (chosen if split == "test" else ~chosen).nonzero().flatten()


def per_class_subset(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Positions of a seeded, class-balanced subset: ``per_class`` items of every class, in input order.

    The small-data regime (e.g. 50 digits per class) of the augmentation study takes its real digits this way.

    Example:
        >>> labels = torch.tensor([0, 1, 0, 1, 0, 1])
        >>> labels[per_class_subset(labels, 2)].bincount().tolist()
        [2, 2]
    """
    check_positive_int("per_class", per_class)
    keep: list[int] = []
    for label in labels.unique().tolist():
        positions = (labels == label).nonzero().flatten().tolist()
        if len(positions) < per_class:
            raise ValueError(f"per_class={per_class} but class {label} has only {len(positions)} items.")
        positions.sort(key=lambda position: derive_seed("digits-subset", seed, position))
        keep += positions[:per_class]
    return torch.tensor(sorted(keep), dtype=torch.long)


def prepare_digits(images: torch.Tensor, image_size: int = 32, channels: int = 1) -> torch.Tensor:
    """28x28 uint8 digits ``(N, 28, 28)`` as uint8 ``(N, channels, image_size, image_size)`` (see the module doc).

    Example:
        >>> digits = torch.full((2, 28, 28), 255, dtype=torch.uint8)
        >>> padded = prepare_digits(digits, image_size=32, channels=3)
        >>> padded.shape, int(padded[0, 0, 0, 0]), int(padded[0, 0, 2, 2])
        (torch.Size([2, 3, 32, 32]), 0, 255)
    """
    check_positive_int("image_size", image_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
    if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or images.dtype != torch.uint8:
        raise ValueError(f"Expected uint8 digits of shape (N, 28, 28), got {images.dtype} {tuple(images.shape)}.")
    out = images[:, None]
    if image_size != 28:
        out = F.pad(out, (2, 2, 2, 2))
        if image_size != 32:
            resized = F.interpolate(out.float(), size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
            out = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out.expand(-1, channels, -1, -1).contiguous()


class DigitsDataset(Dataset):
    """The digits of one split as ``(uint8 image (C, H, W), label)`` pairs.

    Args:
        split: ``"train"`` or ``"test"`` (``"val"`` is the test split).
        image_size: 28 (native), 32 (padded) or any other size (padded to 32, then resized).
        channels: 1 or 3.
        root: ``None`` for the built-in digits, or a folder with MNIST's IDX files.
        per_class: keep only this many digits per class (a seeded, class-balanced subset), e.g. 50.
        subset_seed: seed of that subset.
    """

    class_names = list(DIGIT_CLASSES)

    def __init__(
        self,
        split: str = "train",
        image_size: int = 32,
        channels: int = 1,
        root: str | Path | None = None,
        per_class: int | None = None,
        subset_seed: int = 0,
    ) -> None:
        self.split = _check_split(split)
        self.image_size, self.channels = int(image_size), int(channels)
        self.root = None if root is None else str(root)
        self.per_class, self.subset_seed = per_class, int(subset_seed)
        digits, labels = load_digits(self.split, self.root)
        if per_class is not None:
            keep = per_class_subset(labels, per_class, self.subset_seed)
            digits, labels = digits[keep], labels[keep]
        self.images = prepare_digits(digits, self.image_size, self.channels)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (N, C, H, W) uint8 and labels (N,) int64."""
        return self.images, self.labels

    def fingerprint(self) -> str:
        """Hex digest of everything that determines this dataset's images (for the metric caches)."""
        source = "builtin:" + MNIST_5K_SHA256 if self.root is None else "idx:" + str(Path(self.root).resolve())
        parts = ("digits-v1", source, self.split, self.image_size, self.channels, self.per_class, self.subset_seed)
        return hashlib.sha256(repr(parts).encode()).hexdigest()


class DigitsDataModule(ImageDataModuleBase):
    """Real handwritten digits (MNIST) with labels: the built-in 5,000, or the full MNIST from ``root``.

    ``train_dataloader`` serves the training split; ``val_dataloader`` and ``test_dataloader`` the held-out test
    split, never flipped. Exact resume as with the other data modules: the shuffle (and flips, if turned on)
    depend only on ``seed``, the epoch and the index.

    Args:
        image_size: 28 (native), 32 (padded, the default) or another size (padded to 32, then resized).
        channels: 1 (default) or 3 (grey repeated).
        batch_size: images per batch.
        seed: seed of the shuffle (and of flips).
        root: ``None`` for the built-in digits; a folder with MNIST's IDX files for the full MNIST.
        train_per_class: train on a seeded, class-balanced subset of this many digits per class (e.g. 50).
        subset_seed: seed of that subset.
        random_flip: mirror training images left-right at random (off: digits are not mirror-symmetric).
        num_workers: loader worker processes; 0 (default) since the digits are already in memory.

    Example:
        >>> dm = DigitsDataModule(image_size=28, train_per_class=5)
        >>> len(dm.split_dataset("train")), dm.num_classes, dm.class_names[:3]
        (50, 10, ['0', '1', '2'])
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 1,
        batch_size: int = 64,
        seed: int = 0,
        root: str | os.PathLike | None = None,
        train_per_class: int | None = None,
        subset_seed: int = 0,
        random_flip: bool = False,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        # save_hyperparameters() records the locals as they are now: a string, because Lightning resumes with
        # torch.load(weights_only=True), which refuses pathlib objects.
        root = None if root is None else os.fspath(root)
        self.root = root
        self.image_size = check_positive_int("image_size", image_size)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
        self.channels = int(channels)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.seed = int(seed)
        if train_per_class is not None:
            check_positive_int("train_per_class", train_per_class)
        self.train_per_class, self.subset_seed = train_per_class, int(subset_seed)
        self.random_flip = bool(random_flip)
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
        self.num_workers = int(num_workers)
        self.save_hyperparameters()
        self._datasets: dict[str, DigitsDataset] = {}

    @property
    def class_names(self) -> list[str]:
        return list(DIGIT_CLASSES)

    def split_dataset(self, split: str = "train") -> DigitsDataset:
        """The :class:`DigitsDataset` of ``split`` (``"train"``, or ``"test"`` / ``"val"`` for the held-out digits)."""
        split = _check_split(split)
        if split not in self._datasets:
            per_class = self.train_per_class if split == "train" else None
            self._datasets[split] = DigitsDataset(split, self.image_size, self.channels, self.root, per_class, self.subset_seed)
        return self._datasets[split]

    def fingerprint(self, split: str = "train") -> str:
        """Hex digest of everything that determines the images of ``split``."""
        return self.split_dataset(split).fingerprint()

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            self.split_dataset(split)

    def train_dataloader(self) -> DataLoader:
        dataset = self.split_dataset("train")
        options = self._loader_options()
        return DataLoader(
            EpochItemDataset(dataset, seed=self.seed, random_flip=self.random_flip),
            sampler=self._training_sampler(len(dataset)),
            collate_fn=collate_pairs,
            # A last batch of one image would break batch-norm layers in training.
            drop_last=len(dataset) >= options["batch_size"],
            **options,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.split_dataset("test"), shuffle=False, collate_fn=collate_pairs, **self._loader_options())

    def __getstate__(self) -> dict[str, Any]:
        # The tensors are cheap to rebuild and would bloat what DDP spawn pickles.
        state = self.__dict__.copy()
        state["_datasets"] = {}
        return state


def collate_pairs(samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(image, label)`` pairs into an ``(images, labels)`` batch."""
    return torch.stack([image for image, _ in samples]), torch.tensor([label for _, label in samples], dtype=torch.long)


def write_digits_folder(
    directory: str | Path,
    split: str = "train",
    image_size: int = 28,
    channels: int = 1,
    root: str | Path | None = None,
    per_class: int | None = None,
) -> Path:
    """Write a split's digits as PNG files in one subfolder per class (``0`` ... ``9``).

    :class:`~lightning_gen.data.ImageFolderDataModule` reads the folder back with the same labels (class names
    sort as digits). Files are named by their position in the split, so two writes give the same files.

    Example:
        >>> import tempfile
        >>> folder = write_digits_folder(tempfile.mkdtemp(), "test", per_class=2)
        >>> sorted(p.name for p in folder.iterdir())[:3], len(list(folder.glob("*/*.png")))
        (['0', '1', '2'], 20)
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"'{directory}' exists and is not a directory.")
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"'{directory}' is not empty. Write the digits into a new or empty directory.")
    dataset = DigitsDataset(split, image_size, channels, root, per_class)
    for name in DIGIT_CLASSES:
        (directory / name).mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(dataset) - 1)))
    for index in range(len(dataset)):
        image, label = dataset[index]
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array[:, :, 0] if channels == 1 else array).save(directory / DIGIT_CLASSES[label] / f"{index:0{width}d}.png")
    return directory


def make_digits_main(argv: Sequence[str] | None = None) -> int:
    """``lightning-gen make-digits DIR [--split train|test] [--image-size S] [--channels C] [--per-class N]``."""
    parser = argparse.ArgumentParser(
        prog="lightning-gen make-digits",
        description="Write the built-in MNIST digits (or the full MNIST with --root) as PNGs in one folder per class.",
    )
    parser.add_argument("directory", metavar="DIR", help="new or empty output folder")
    parser.add_argument("--split", choices=SPLITS, default="train", help="train (4,000 built-in) or test (1,000); default train")
    parser.add_argument("--image-size", type=int, default=28, help="28 native (default), 32 padded, or another size")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1, help="1 = grayscale (default), 3 = RGB")
    parser.add_argument("--per-class", type=int, default=None, help="only this many digits per class (seeded subset)")
    parser.add_argument("--root", default=None, help="folder with MNIST's IDX files (default: the built-in digits)")
    args = parser.parse_args(argv)
    try:
        folder = write_digits_folder(args.directory, args.split, args.image_size, args.channels, args.root, args.per_class)
    except (ValueError, OSError) as error:
        print(f"lightning-gen make-digits: error: {error}", file=sys.stderr)
        return 1
    count = len(list(folder.glob("*/*.png")))
    print(f"Wrote {count} {args.split} digits of {args.image_size}x{args.image_size} px to {folder}")
    return 0


def _check_split(split: str) -> str:
    split = "test" if split == "val" else split
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test' ('val' is the test split), got {split!r}.")
    return split


def _read_idx_pair(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_name, labels_name = _IDX_FILES[split]
    return _read_idx(_find_idx(root, images_name), 3), _read_idx(_find_idx(root, labels_name), 1).long()


def _find_idx(root: Path, name: str) -> Path:
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"No MNIST file {name}[.gz] under '{root}' (looked in MNIST/raw/, raw/ and the folder itself). Point root= "
        "at the folder torchvision's MNIST(root=...) downloaded into, or omit root for the built-in digits."
    )


def _read_idx(path: Path, ndim: int) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format: magic 0x0000080N, N big-endian dimensions, then the data)."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + ndim:
        raise ValueError(f"{path} is not an IDX file of {ndim}-d unsigned bytes (magic {magic:#x}).")
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {data.size} bytes of data for a shape of {shape}: the file is truncated.")
    return torch.from_numpy(data.reshape(shape).copy())
