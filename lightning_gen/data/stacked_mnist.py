"""Stacked MNIST: the standard benchmark of mode coverage, built from real handwritten digits.

Each 32x32 RGB image stacks three digits drawn at random from a digits training set, one per
channel (red, green, blue), so the data has 10 x 10 x 10 = 1,000 modes (Metz et al., 2017; used by
VEEGAN, PacGAN and R3GAN). A generator's coverage is measured by reading each channel of its
samples with a digit classifier: see :mod:`lightning_gen.metrics.stacked_mnist`.

Image ``i`` depends only on ``(seed, i)`` and the digits: its three digit indices are drawn from a
generator seeded by both, so any image can be made alone, in any order, in any worker, and a
resumed run sees the same images in the same order. Images are composed on the fly (three
lookups), which costs no memory whatever ``num_images`` is.

Its label is the mode, ``100 * red digit + 10 * green digit + blue digit`` (0 to 999). Digits of
28x28 are padded by two black pixels on each side (LeNet's 32x32 framing), not resized, so every
channel holds the original pixels. Training images are never mirrored: a mirrored digit is not a
digit.

Example:
    >>> import torch
    >>> digits = torch.zeros(10, 28, 28, dtype=torch.uint8)
    >>> dataset = StackedMNISTDataset(digits, torch.arange(10), num_images=5, seed=0)
    >>> image, mode = dataset[0]
    >>> image.shape, image.dtype, mode == stacked_mode(*dataset.digit_labels(0))
    (torch.Size([3, 32, 32]), torch.uint8, True)
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_gen.data._base import ImageDataModuleBase, check_fraction, check_positive_int
from lightning_gen.data._sampling import EpochItemDataset, derive_seed
from lightning_gen.data.digits import collate_pairs

__all__ = ["NUM_MODES", "StackedMNISTDataModule", "StackedMNISTDataset", "frame_digits", "stacked_mode"]

NUM_MODES = 1000
IMAGE_SIZE = 32
_FORMAT_VERSION = 1  # bump when the composition changes, so fingerprints change with it


def stacked_mode(red: int | Tensor, green: int | Tensor, blue: int | Tensor) -> int | Tensor:
    """The mode index of a stack of three digits: ``100 * red + 10 * green + blue``.

    Example:
        >>> stacked_mode(3, 0, 7)
        307
    """
    return 100 * red + 10 * green + blue


def frame_digits(digits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Check and frame digit images: uint8 ``(N, 28, 28)``, ``(N, 1, 28, 28)`` or 32x32 -> uint8 ``(N, 32, 32)``.

    Returns the framed digits and the labels as int64 ``(N,)`` in 0..9.

    Example:
        >>> framed, labels = frame_digits(torch.full((2, 1, 28, 28), 255, dtype=torch.uint8), torch.tensor([1, 2]))
        >>> framed.shape, framed[0, 0, 0].item(), framed[0, 2, 2].item()
        (torch.Size([2, 32, 32]), 0, 255)
    """
    if not isinstance(digits, Tensor) or digits.dtype != torch.uint8:
        raise ValueError(f"digits must be a uint8 tensor of images in 0..255, got {getattr(digits, 'dtype', type(digits).__name__)}.")
    if digits.ndim == 4 and digits.shape[1] == 1:
        digits = digits[:, 0]
    if digits.ndim != 3 or tuple(digits.shape[1:]) not in ((28, 28), (32, 32)):
        raise ValueError(f"digits must have shape (N, 28, 28), (N, 32, 32) or with a channel axis of 1, got {tuple(digits.shape)}.")
    labels = torch.as_tensor(labels).long().flatten()
    if labels.shape[0] != digits.shape[0] or digits.shape[0] == 0:
        raise ValueError(f"need one label per digit and at least one digit; got {digits.shape[0]} digits and {labels.shape[0]} labels.")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"digit labels must be in 0..9, got the range {int(labels.min())}..{int(labels.max())}.")
    if digits.shape[-1] == 28:
        digits = torch.nn.functional.pad(digits, (2, 2, 2, 2))
    return digits.contiguous(), labels


class StackedMNISTDataset(Dataset):
    """Three random digits stacked as the channels of a 32x32 image; item ``i`` is ``(uint8 (3, 32, 32), mode)``.

    Args:
        digits: uint8 digit images ``(N, 28, 28)`` or ``(N, 32, 32)`` (a channel axis of 1 is allowed),
            e.g. a digits training split.
        labels: their digit classes ``(N,)`` in 0..9.
        num_images: number of stacked images.
        seed: image ``i`` depends only on ``seed``, ``start + i`` and the digits.
        start: index of the first image, so a validation split can continue where training stops.
    """

    def __init__(self, digits: Tensor, labels: Tensor, num_images: int = 100_000, seed: int = 0, start: int = 0) -> None:
        self.digits, self.labels = frame_digits(digits, labels)
        self.num_images = check_positive_int("num_images", num_images)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start!r}.")
        self.seed, self.start = seed, int(start)

    @property
    def class_names(self) -> list[str]:
        """The modes as three-digit strings, in label order (``"000"`` to ``"999"``)."""
        return [f"{mode:03d}" for mode in range(NUM_MODES)]

    def __len__(self) -> int:
        return self.num_images

    def digit_indices(self, index: int) -> tuple[int, int, int]:
        """Indices into ``digits`` of the red, green and blue digit of image ``index``."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} is out of range for a StackedMNISTDataset of {self.num_images} images.")
        # A generator per (seed, index), not one stream for the dataset: any image can be made alone.
        rng = torch.Generator().manual_seed(derive_seed("stacked-mnist", self.seed, self.start + int(index)))
        red, green, blue = torch.randint(self.digits.shape[0], (3,), generator=rng).tolist()
        return red, green, blue

    def digit_labels(self, index: int) -> tuple[int, int, int]:
        """The digit classes of the red, green and blue channel of image ``index``."""
        red, green, blue = (int(self.labels[i]) for i in self.digit_indices(index))
        return red, green, blue

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        chosen = list(self.digit_indices(index))
        image = self.digits[chosen]  # (3, 32, 32): one digit per channel
        return image, int(stacked_mode(*(int(self.labels[i]) for i in chosen)))

    def modes(self) -> Tensor:
        """The mode of every image, ``(num_images,)`` int64 (no image is composed)."""
        return torch.tensor([stacked_mode(*self.digit_labels(i)) for i in range(self.num_images)], dtype=torch.long)

    def fingerprint(self) -> str:
        """Hex digest of everything that determines the images (the digits included)."""
        digest = hashlib.sha256()
        digest.update(f"stacked-mnist:{_FORMAT_VERSION}:{self.num_images}:{self.seed}:{self.start}".encode())
        digest.update(self.digits.numpy().tobytes())
        digest.update(self.labels.numpy().tobytes())
        return digest.hexdigest()


class StackedMNISTDataModule(ImageDataModuleBase):
    """Stacked MNIST (:class:`StackedMNISTDataset`) as a LightningDataModule.

    Batches are ``(uint8 images (B, 3, 32, 32), modes (B,))``; they reach the LightningModule as float
    in ``[-1, 1]``. The order of the training split is a function of ``(seed, epoch)`` only
    (:class:`~lightning_gen.data.EpochShuffleSampler`), so resumed runs see exactly the same batches.

    Args:
        digits: ``(images, labels)`` of the digits to stack (see :class:`StackedMNISTDataset`), or a
            map-style dataset whose items are ``(uint8 image, label)``; ``None`` (the default, and what the
            command line uses) stacks the built-in digits' training split (4,000 MNIST digits), so the
            held-out test digits stay unseen by the generator and by the classifier that counts the modes.
        num_images: stacked images, training plus validation.
        batch_size: images per batch.
        val_fraction: share of the images held out for validation, in [0, 1); the validation images
            are further draws from the same digits.
        seed: seed of the images and of the shuffling order.
        num_workers: loader worker processes (composing an image is three lookups, so 0 is the default).

    Example:
        >>> digits = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8)
        >>> dm = StackedMNISTDataModule((digits, torch.arange(20) % 10), num_images=40, batch_size=8)
        >>> dm.setup("fit")
        >>> images, modes = next(iter(dm.train_dataloader()))
        >>> images.shape, images.dtype, dm.num_classes
        (torch.Size([8, 3, 32, 32]), torch.uint8, 1000)
    """

    def __init__(
        self,
        digits: tuple[Tensor, Tensor] | Dataset | None = None,
        num_images: int = 100_000,
        batch_size: int = 64,
        val_fraction: float = 0.02,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if digits is None:
            from lightning_gen.data.digits import load_digits

            digits = load_digits("train")
        self.digits, self.digit_labels = frame_digits(*_digit_tensors(digits))
        self.image_size, self.channels = IMAGE_SIZE, 3
        self.num_images = check_positive_int("num_images", num_images)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        self.seed = seed
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers!r}.")
        self.num_workers = int(num_workers)
        self.num_val = int(round(self.num_images * self.val_fraction))
        if self.num_images - self.num_val < 1:
            raise ValueError(f"num_images={num_images} with val_fraction={val_fraction} leaves no training images; raise num_images.")
        # The digits are data, not settings: checkpoints keep the settings and the fingerprint names the data.
        self.save_hyperparameters(ignore=["digits"])

    @property
    def class_names(self) -> list[str]:
        return [f"{mode:03d}" for mode in range(NUM_MODES)]

    def split_dataset(self, split: str = "train") -> StackedMNISTDataset | None:
        """The :class:`StackedMNISTDataset` behind a split (training first, validation after); None for an empty split."""
        self._check_split(split)
        num_train = self.num_images - self.num_val
        if split == "train":
            return StackedMNISTDataset(self.digits, self.digit_labels, num_train, seed=self.seed)
        if not self.num_val:
            return None
        return StackedMNISTDataset(self.digits, self.digit_labels, self.num_val, seed=self.seed, start=num_train)

    def fingerprint(self, split: str = "train") -> str:
        dataset = self.split_dataset(split)
        return dataset.fingerprint() if dataset is not None else hashlib.sha256(b"empty").hexdigest()

    def setup(self, stage: str | None = None) -> None:
        pass  # nothing to prepare: images are composed on demand

    def train_dataloader(self) -> DataLoader:
        dataset = self.split_dataset("train")
        options = self._loader_options()
        return DataLoader(
            EpochItemDataset(dataset, seed=self.seed, random_flip=False),
            sampler=self._training_sampler(len(dataset)),
            collate_fn=collate_pairs,
            drop_last=len(dataset) >= options["batch_size"],
            **options,
        )

    def val_dataloader(self) -> DataLoader | list:
        dataset = self.split_dataset("val")
        if dataset is None:
            return []
        return DataLoader(dataset, shuffle=False, collate_fn=collate_pairs, **self._loader_options())


def _digit_tensors(digits: tuple[Tensor, Tensor] | Dataset) -> tuple[Tensor, Tensor]:
    if isinstance(digits, (tuple, list)) and len(digits) == 2:
        return digits[0], digits[1]
    if isinstance(digits, Dataset):
        items = [digits[i] for i in range(len(digits))]  # type: ignore[arg-type]
        return torch.stack([torch.as_tensor(image) for image, _ in items]), torch.tensor([int(label) for _, label in items])
    raise ValueError(f"digits must be (images, labels) tensors or a dataset of (image, label) items, got {type(digits).__name__}.")

