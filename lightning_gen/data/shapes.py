"""Procedural shapes: the built-in dataset that needs no files and no download.

Every image is one filled shape (circle, square, triangle, star or hexagon) in one of
eight colours, at a random position, size and rotation, on a plain or two-colour
gradient background. Image ``i`` depends only on ``(seed, i)`` and the settings, so
the dataset is the same on every machine and in every worker process, and the
factors that produced an image are known exactly. That makes it the default for
smoke tests, tutorials and CPU-sized training runs, and lets generated samples be
scored for coverage (did the model produce every shape, every colour?).

Shapes are drawn with Pillow at 4x the target size and box-averaged down, which
antialiases edges even at 16-32 px.

This module is not a benchmark of image realism, and it has no test split.

Example:
    >>> dataset = ShapesDataset(num_images=10, image_size=16, seed=0)
    >>> image, label = dataset[3]
    >>> image.shape, image.dtype, dataset.class_names[label] == dataset.factors(3)["shape"]
    (torch.Size([3, 16, 16]), torch.uint8, True)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate

from lightning_gen.data._base import (
    ImageDataModuleBase,
    check_fraction,
    check_positive_int,
    default_num_workers,
)
from lightning_gen.data._sampling import EpochItemDataset

__all__ = [
    "BACKGROUND_COLOURS",
    "COLOURS",
    "DEFAULT_SHAPES",
    "SHAPE_KINDS",
    "ShapesDataModule",
    "ShapesDataset",
    "make_shapes_main",
    "write_shapes_folder",
]

#: Every shape kind that can be drawn.
SHAPE_KINDS: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon")
#: The kinds used unless told otherwise: the three easiest to tell apart at 32 px.
DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

#: Shape colours: saturated and bright, so they stand out on the dark backgrounds
#: in colour and still differ from them in luminance when ``channels=1``.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (235, 45, 45),
    "orange": (250, 145, 25),
    "yellow": (245, 225, 45),
    "green": (55, 205, 70),
    "cyan": (45, 215, 225),
    "blue": (70, 120, 255),
    "magenta": (225, 70, 225),
    "white": (245, 245, 245),
}
#: Background colours: dark, so that every shape colour contrasts with them.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 12),
    "charcoal": (55, 55, 60),
    "navy": (20, 28, 80),
    "forest": (20, 60, 35),
    "plum": (70, 25, 60),
    "brown": (70, 45, 22),
}

_SUPERSAMPLING = 4  # draw at 4x, box-average down: clean edges at small sizes
_SCALE_RANGE = (0.35, 0.75)  # circumscribed-circle diameter / image side
_GRADIENT_PROBABILITY = 0.5
_FORMAT_VERSION = 1  # bump when drawing changes, so fingerprints change with it


class ShapesDataset(Dataset):
    """Procedurally drawn shapes; item ``i`` is ``(uint8 image (C, H, W), shape label)``.

    Args:
        num_images: Number of images.
        image_size: Side of the square images, in pixels.
        channels: 3 for RGB, 1 for grayscale.
        seed: Seed of the whole dataset; image ``i`` depends only on it, ``i`` and the
            other settings.
        shapes: Shape kinds to draw, a subset of :data:`SHAPE_KINDS`. The label of an
            image is the index of its shape in this tuple.
        start: Index of the first image. Lets a validation set continue where the
            training set stops without sharing images.

    Example:
        >>> dataset = ShapesDataset(num_images=4, image_size=8, shapes=("star", "circle"))
        >>> sorted(dataset.factors(0))[:4]
        ['background', 'background_colour', 'background_colour_2', 'colour']
        >>> dataset.factor_table()["shape"].shape
        (4,)
    """

    def __init__(
        self,
        num_images: int = 20000,
        image_size: int = 32,
        channels: int = 3,
        seed: int = 0,
        shapes: Sequence[str] = DEFAULT_SHAPES,
        start: int = 0,
    ) -> None:
        self.num_images = check_positive_int("num_images", num_images)
        self.image_size = check_positive_int("image_size", image_size)
        self.channels = _check_channels(channels)
        self.seed = _check_seed(seed)
        self.shapes = _check_shapes(shapes)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}.")
        self.start = int(start)

    @property
    def class_names(self) -> list[str]:
        """Shape kinds in label order."""
        return list(self.shapes)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        factors = self.factors(index)
        image = _render(factors, self.image_size, self.channels)
        return torch.from_numpy(image), factors["shape_id"]

    def factors(self, index: int) -> dict[str, Any]:
        """The generative factors of image ``index``.

        Returns:
            A dict with ``index``; ``shape`` and ``shape_id`` (the label); ``colour``
            and ``colour_id`` (index into :data:`COLOURS`); ``x`` and ``y`` (centre,
            as a fraction of the image side, origin top-left); ``scale`` (diameter of
            the circle around the shape / image side); ``rotation`` (degrees,
            counter-clockwise; no visible effect on circles); ``background``
            (``"plain"`` or ``"gradient"``), ``background_colour``,
            ``background_colour_2`` (equal to the first for plain backgrounds) and
            ``gradient_angle`` (degrees).
        """
        if not 0 <= index < self.num_images:
            raise IndexError(
                f"index {index} is out of range for a ShapesDataset of {self.num_images} images."
            )
        return _sample_factors(self.seed, self.start + int(index), self.shapes)

    def factor_table(self) -> dict[str, np.ndarray]:
        """Factors of every image as columns, e.g. for ``pandas.DataFrame(table)``.

        Cheap: only the random draws are made, nothing is drawn.
        """
        rows = [self.factors(i) for i in range(self.num_images)]
        return {key: np.array([row[key] for row in rows]) for key in rows[0]}

    def fingerprint(self) -> str:
        """Hex digest of everything that determines the images."""
        settings = {
            "kind": "shapes",
            "version": _FORMAT_VERSION,
            "num_images": self.num_images,
            "image_size": self.image_size,
            "channels": self.channels,
            "seed": self.seed,
            "shapes": list(self.shapes),
            "start": self.start,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Render every image once: ``(uint8 images (N, C, H, W), labels (N,))``."""
        images = torch.empty(
            (self.num_images, self.channels, self.image_size, self.image_size), dtype=torch.uint8
        )
        labels = torch.empty(self.num_images, dtype=torch.long)
        for i in range(self.num_images):
            images[i], labels[i] = self[i]
        return images, labels


class ShapesDataModule(ImageDataModuleBase):
    """Shapes data (:class:`ShapesDataset`) as a LightningDataModule.

    Batches are ``(images, labels)`` with labels the shape kind; they reach the
    LightningModule as float in ``[-1, 1]`` (see :meth:`on_after_batch_transfer`).
    The defaults suit a quick CPU run at 32 px: the images are rendered once in
    :meth:`setup` (20,000 RGB images at 32 px take about 60 MB) and then served from
    memory by the main process, because there is no decoding left for workers to do.

    Training images are mirrored left-right at random (``random_flip``), as with
    :class:`ImageFolderDataModule`. Every shape kind is mirror-symmetric up to rotation and
    positions, rotations and gradient angles are drawn symmetrically, so a flipped image is
    another draw from the same distribution; its factors are those of
    ``split_dataset("train").factors(i)`` mirrored (``x`` becomes ``1 - x``, the angles are
    reflected). Validation images and the training dataset read by index are never flipped.

    Args:
        image_size: Side of the square images, in pixels.
        channels: 3 for RGB, 1 for grayscale.
        num_images: Total number of images, training plus validation.
        batch_size: Images per batch.
        val_fraction: Share of the images held out for validation, in [0, 1).
        seed: Seed of the images, the shuffling order and the flips: each is a function of
            ``(seed, epoch, index)`` only, so resumed runs see exactly the same batches.
        shapes: Shape kinds to draw (see ``SHAPE_KINDS``); also the class names.
        in_memory: Render every image once in ``setup`` (fast epochs). When False,
            images are drawn on the fly in the loader, which uses no memory.
        num_workers: Loader worker processes. None means 0 when ``in_memory`` (nothing
            left to parallelise), otherwise up to 4.
        random_flip: Flip training images horizontally with probability 0.5.

    Example:
        >>> dm = ShapesDataModule(image_size=16, num_images=40, batch_size=8)
        >>> dm.setup("fit")
        >>> images, labels = next(iter(dm.train_dataloader()))
        >>> images.shape, images.dtype, dm.class_names
        (torch.Size([8, 3, 16, 16]), torch.uint8, ['circle', 'square', 'triangle'])
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        num_images: int = 20000,
        batch_size: int = 64,
        val_fraction: float = 0.02,
        seed: int = 0,
        shapes: Sequence[str] = DEFAULT_SHAPES,
        in_memory: bool = True,
        num_workers: int | None = None,
        random_flip: bool = True,
    ) -> None:
        super().__init__()
        self.image_size = check_positive_int("image_size", image_size)
        self.channels = _check_channels(channels)
        self.num_images = check_positive_int("num_images", num_images)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.seed = _check_seed(seed)
        self.shapes = _check_shapes(shapes)
        self.in_memory = bool(in_memory)
        if num_workers is None:
            num_workers = 0 if self.in_memory else default_num_workers()
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
        self.num_workers = int(num_workers)
        self.random_flip = bool(random_flip)
        self.num_val = int(round(self.num_images * self.val_fraction))
        if self.num_images - self.num_val < 1:
            raise ValueError(
                f"num_images={num_images} with val_fraction={val_fraction} leaves no "
                "training images; raise num_images or lower val_fraction."
            )
        self.save_hyperparameters()
        self._datasets: dict[str, Dataset] = {}

    @property
    def class_names(self) -> list[str]:
        return list(self.shapes)

    def split_dataset(self, split: str = "train") -> ShapesDataset | None:
        """The :class:`ShapesDataset` behind a split (training first, validation after).

        None for ``"val"`` when ``val_fraction`` leaves no validation images.
        """
        self._check_split(split)
        num_train = self.num_images - self.num_val
        if split == "train":
            return self._dataset(num_train, start=0)
        return self._dataset(self.num_val, start=num_train) if self.num_val else None

    def fingerprint(self, split: str = "train") -> str:
        """Hex digest of everything that determines the images of ``split``."""
        dataset = self.split_dataset(split)
        if dataset is None:  # no validation images
            return hashlib.sha256(b"empty").hexdigest()
        return dataset.fingerprint()

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val"):
            if split in self._datasets:
                continue
            dataset = self.split_dataset(split)
            if dataset is None:
                continue
            if self.in_memory:
                self._datasets[split] = TensorDataset(*dataset.to_tensors())
            else:
                self._datasets[split] = dataset

    def train_dataloader(self) -> DataLoader:
        dataset = self._require("train")
        options = self._loader_options()
        return DataLoader(
            EpochItemDataset(dataset, seed=self.seed, random_flip=self.random_flip),
            sampler=self._training_sampler(len(dataset)),
            collate_fn=_collate_pairs,
            # A last batch of one image would break batch-norm layers in training.
            drop_last=len(dataset) >= options["batch_size"],
            **options,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.num_val == 0:
            return []  # Lightning treats an empty list as "no validation"
        return DataLoader(
            self._require("val"), shuffle=False, collate_fn=_collate_pairs, **self._loader_options()
        )

    def _dataset(self, num_images: int, start: int) -> ShapesDataset:
        return ShapesDataset(
            num_images=num_images,
            image_size=self.image_size,
            channels=self.channels,
            seed=self.seed,
            shapes=self.shapes,
            start=start,
        )

    def _require(self, split: str) -> Dataset:
        if split not in self._datasets:
            self.setup()
        return self._datasets[split]

    def __getstate__(self) -> dict[str, Any]:
        # Rendered tensors are cheap to rebuild and would bloat what DDP spawn pickles.
        state = self.__dict__.copy()
        state["_datasets"] = {}
        return state


def write_shapes_folder(
    directory: str | Path,
    n: int,
    image_size: int = 32,
    seed: int = 0,
    channels: int = 3,
    shapes: Sequence[str] = DEFAULT_SHAPES,
    progress: bool = False,
) -> Path:
    """Write shapes as PNG files, one subfolder per shape kind, plus ``factors.csv``.

    The result is a labelled image folder that :class:`ImageFolderDataModule` reads
    back with the same class names. ``factors.csv`` (one row per image, with its
    relative path) is ignored by the loader since it has no image extension.

    Args:
        directory: Folder to write into; created when missing. Must not already hold
            files, so that two datasets never get mixed.
        n: Number of images.
        image_size: Side of the images, in pixels.
        seed: Seed; the same arguments always write the same images.
        channels: 3 for RGB PNGs, 1 for grayscale PNGs.
        shapes: Shape kinds to draw.
        progress: Show a progress bar.

    Returns:
        The directory.

    Example:
        >>> import tempfile
        >>> folder = write_shapes_folder(tempfile.mkdtemp(), n=6, image_size=16)
        >>> sorted(p.name for p in folder.iterdir())
        ['circle', 'factors.csv', 'square', 'triangle']
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"'{directory}' exists and is not a directory.")
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(
            f"'{directory}' is not empty. Write the shapes into a new or empty directory "
            "so that they don't mix with other files."
        )
    dataset = ShapesDataset(
        num_images=n, image_size=image_size, channels=channels, seed=seed, shapes=shapes
    )
    for kind in dataset.shapes:
        (directory / kind).mkdir(parents=True, exist_ok=True)
    indices: Any = range(n)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"Writing shapes to {directory}", unit="img")
    digits = max(6, len(str(n - 1)))
    rows = []
    for i in indices:
        factors = dataset.factors(i)
        array = _render(factors, dataset.image_size, dataset.channels)
        relative = f"{factors['shape']}/{i:0{digits}d}.png"
        image = Image.fromarray(array[0] if dataset.channels == 1 else array.transpose(1, 2, 0))
        image.save(directory / relative)
        rows.append({"path": relative, **factors})
    with open(directory / "factors.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return directory


def make_shapes_main(argv: Sequence[str] | None = None) -> int:
    """``lightning-gen make-shapes DIR --n N --image-size S [--seed] [--channels]``.

    Writes the shapes data as an image folder (see :func:`write_shapes_folder`).
    Returns the process exit code.
    """
    parser = argparse.ArgumentParser(
        prog="lightning-gen make-shapes",
        description=(
            "Write procedurally drawn shapes as PNG files, one subfolder per shape kind "
            "(a labelled folder for ImageFolderDataModule), plus factors.csv with each "
            "image's shape, colour, position, scale, rotation and background."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="new or empty output folder")
    parser.add_argument("--n", type=int, default=1000, help="number of images (default: 1000)")
    parser.add_argument(
        "--image-size", type=int, default=32, help="side of the images in pixels (default: 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--channels", type=int, choices=(1, 3), default=3, help="1 = grayscale, 3 = RGB (default)"
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=SHAPE_KINDS,
        default=list(DEFAULT_SHAPES),
        help=f"shape kinds to draw (default: {' '.join(DEFAULT_SHAPES)})",
    )
    args = parser.parse_args(argv)
    try:
        folder = write_shapes_folder(
            args.directory,
            n=args.n,
            image_size=args.image_size,
            seed=args.seed,
            channels=args.channels,
            shapes=args.shapes,
            progress=True,
        )
    except (ValueError, OSError) as error:
        print(f"lightning-gen make-shapes: error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {args.n} images of {args.image_size}x{args.image_size} px to {folder}")
    return 0


def _collate_pairs(samples: list[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    # default_collate would return a list; the library's batches are (images, labels) tuples.
    images = default_collate([image for image, _ in samples])
    return images, torch.tensor([int(label) for _, label in samples], dtype=torch.long)


def _sample_factors(seed: int, index: int, shapes: tuple[str, ...]) -> dict[str, Any]:
    # A generator per (seed, index) - not one stream for the dataset - so any image
    # can be drawn alone, in any order, in any worker.
    rng = np.random.default_rng([seed, index])
    shape_id = int(rng.integers(len(shapes)))
    colour_names = list(COLOURS)
    colour_id = int(rng.integers(len(colour_names)))
    scale = float(rng.uniform(*_SCALE_RANGE))
    # Keep the circumscribed circle inside the image: nothing is ever cut off.
    radius = scale / 2
    x = float(rng.uniform(radius, 1 - radius))
    y = float(rng.uniform(radius, 1 - radius))
    rotation = float(rng.uniform(0.0, 360.0))
    background_names = list(BACKGROUND_COLOURS)
    gradient = bool(rng.random() < _GRADIENT_PROBABILITY)
    first = background_names[int(rng.integers(len(background_names)))]
    # Draw both always, so that the sequence of draws is the same for both kinds.
    second = background_names[int(rng.integers(len(background_names)))]
    angle = float(rng.uniform(0.0, 360.0))
    return {
        "index": index,
        "shape": shapes[shape_id],
        "shape_id": shape_id,
        "colour": colour_names[colour_id],
        "colour_id": colour_id,
        "x": x,
        "y": y,
        "scale": scale,
        "rotation": rotation,
        "background": "gradient" if gradient else "plain",
        "background_colour": first,
        "background_colour_2": second if gradient else first,
        "gradient_angle": angle if gradient else 0.0,
    }


def _render(factors: dict[str, Any], image_size: int, channels: int) -> np.ndarray:
    # Only the shape's coverage mask is supersampled: the background is smooth, so it
    # is computed at the final size and the shape colour is blended over it.
    big = image_size * _SUPERSAMPLING
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    centre_x, centre_y = factors["x"] * big, factors["y"] * big
    radius = factors["scale"] * big / 2
    if factors["shape"] == "circle":
        draw.ellipse(
            (centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius),
            fill=255,
        )
    else:
        draw.polygon(
            _vertices(factors["shape"], centre_x, centre_y, radius, factors["rotation"]),
            fill=255,
        )
    coverage = np.asarray(mask.reduce(_SUPERSAMPLING), dtype=np.float32)[..., None] / 255.0
    background = _background(factors, image_size)
    colour = np.array(COLOURS[factors["colour"]], dtype=np.float32)
    rgb = (background + (colour - background) * coverage).round().astype(np.uint8)
    if channels == 1:
        return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))[None].copy()
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def _vertices(
    kind: str, centre_x: float, centre_y: float, radius: float, rotation: float
) -> list[tuple[float, float]]:
    if kind == "star":
        radii = [radius if k % 2 == 0 else radius * 0.45 for k in range(10)]
        start = -90.0  # one point straight up before rotation
    else:
        corners = {"square": 4, "triangle": 3, "hexagon": 6}[kind]
        radii = [radius] * corners
        start = {"square": 45.0, "triangle": -90.0, "hexagon": 0.0}[kind]
    step = 360.0 / len(radii)
    points = []
    for k, r in enumerate(radii):
        # Image y points down, so subtracting the sine turns counter-clockwise.
        angle = math.radians(start + rotation + k * step)
        points.append((centre_x + r * math.cos(angle), centre_y - r * math.sin(angle)))
    return points


def _background(factors: dict[str, Any], size: int) -> np.ndarray:
    """Float32 ``(size, size, 3)`` background in 0..255."""
    first = np.array(BACKGROUND_COLOURS[factors["background_colour"]], dtype=np.float32)
    if factors["background"] == "plain":
        return np.broadcast_to(first, (size, size, 3))
    second = np.array(BACKGROUND_COLOURS[factors["background_colour_2"]], dtype=np.float32)
    angle = math.radians(factors["gradient_angle"])
    cos, sin = math.cos(angle), math.sin(angle)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    # Position along the gradient direction, rescaled so the image spans exactly [0, 1].
    t = (coords[None, :] * cos - coords[:, None] * sin) / (abs(cos) + abs(sin)) + 0.5
    return first + (second - first) * t[..., None]


def _check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
    return int(channels)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    return seed


def _check_shapes(shapes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(shapes, str):
        shapes = (shapes,)
    shapes = tuple(shapes)
    unknown = [kind for kind in shapes if kind not in SHAPE_KINDS]
    if unknown or not shapes:
        raise ValueError(
            f"shapes must be a non-empty selection of {SHAPE_KINDS}, got {shapes!r}."
        )
    if len(set(shapes)) != len(shapes):
        raise ValueError(f"shapes lists a kind twice: {shapes!r}.")
    return shapes
