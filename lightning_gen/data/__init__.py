"""Image data for lightning-gen: your own image folders, and procedural shapes.

* :class:`ImageFolderDataModule` reads a folder of images (subfolders are classes),
  decodes every common Pillow mode, skips or reports bad files, and can cache the
  decoded images on disk.
* :class:`ShapesDataModule` / :class:`ShapesDataset` draw shapes procedurally: the
  built-in default that needs no files, with known generative factors per image.
* :class:`DigitsDataModule` / :class:`DigitsDataset` serve real handwritten digits (5,000 MNIST
  digits ship with the package; the full MNIST from its files), labelled, with a fixed test split.

Both loaders yield uint8 batches; the data modules' ``on_after_batch_transfer``
turns them into float in ``[-1, 1]`` on the training device.
"""

from lightning_gen.data._base import ImageDataModuleBase
from lightning_gen.data._sampling import EpochShuffleSampler
from lightning_gen.data.cache import default_cache_dir
from lightning_gen.data.decoding import (
    BadImageWarning,
    ImageDecodeError,
    decode_image,
    load_image,
    resize_center_crop,
)
from lightning_gen.data.digits import DigitsDataModule, DigitsDataset, load_digits, make_digits_main, write_digits_folder
from lightning_gen.data.image_folder import (
    DEFAULT_EXTENSIONS,
    ImageFolderDataModule,
    scan_image_folder,
)
from lightning_gen.data.shapes import (
    SHAPE_KINDS,
    ShapesDataModule,
    ShapesDataset,
    make_shapes_main,
    write_shapes_folder,
)

__all__ = [
    "DEFAULT_EXTENSIONS",
    "DigitsDataModule",
    "DigitsDataset",
    "SHAPE_KINDS",
    "BadImageWarning",
    "EpochShuffleSampler",
    "ImageDataModuleBase",
    "ImageDecodeError",
    "ImageFolderDataModule",
    "ShapesDataModule",
    "ShapesDataset",
    "decode_image",
    "default_cache_dir",
    "load_digits",
    "load_image",
    "make_digits_main",
    "make_shapes_main",
    "resize_center_crop",
    "scan_image_folder",
    "write_digits_folder",
    "write_shapes_folder",
]
