"""``ImageFolderDataModule``: train on a folder of your own images.

Layout. Images are found under ``root`` by case-insensitive extension; names starting
with a dot (files and folders) are ignored, and so is every file with another
extension. When ``root`` has subfolders that contain images, each such top-level
subfolder is a class (names sorted, labels ``0..K-1``) and batches are
``(images, labels)``; otherwise the images directly in ``root`` form an unlabeled
set and batches are ``images``. With ``recursive=True`` images are also found in
nested folders below a class folder.

Split. A file goes to validation when a hash of ``(seed, its relative path)`` falls
below ``val_fraction``. Unlike a seeded permutation, this never moves a file between
splits when other files are added or removed: adding images to a folder only adds
them to one split, so validation scores stay comparable.

Bad files. A folder of real images has empty files, half-copied files, HTML pages
saved as ``.jpg``, decompression bombs (images above Pillow's
``Image.MAX_IMAGE_PIXELS`` limit) and files nobody may read. Cheap checks (empty,
cannot stat) run while scanning; everything else only shows when the whole file is
decoded, which happens in DataLoader workers, possibly in another process. So:

* With ``on_error="raise"`` the worker raises :class:`ImageDecodeError` naming the
  file and the reason; the DataLoader re-raises it in the training process.
* With ``on_error="skip"`` the failed item is replaced, inside the worker, by the
  next readable image in a pseudo-random order fixed by ``(seed, index)``, so every
  batch keeps its size (dropping the item would make batch sizes, and with DDP the
  number of steps per process, depend on where bad files happen to fall). The
  failures travel with the batch to the main process, where the loader strips them
  off and, at the end of the pass over the data, emits one :class:`BadImageWarning`
  with the count and the first few paths. A file is reported once per data module,
  not once per epoch.
* With ``cache=True`` every file is fully decoded while the cache is built, and with
  ``in_memory`` every file is decoded in ``setup``, so all bad files are known up front:
  ``"raise"`` stops at the first one, and ``"skip"`` leaves them out of both splits and
  warns once in ``setup``.

Small folders in memory. When the decoded images fit in :data:`IN_MEMORY_BYTES` (256 MiB,
e.g. 87,000 RGB images at 32x32 or 21,000 at 64x64), ``in_memory=None`` (the default)
decodes every file once in ``setup`` into one uint8 tensor and trains from it: a batch is
one indexing of that tensor and one masked flip, with no worker processes (``num_workers``
then defaults to 0: workers would only copy tensors that are already in memory between
processes). Batches, flips and resumed runs are identical to the streamed path's.
``in_memory=False`` decodes in workers on every epoch instead (folders that change while
training, or memory that is short); ``in_memory=True`` keeps any folder in memory.

Batches. Loaders yield ``uint8`` images ``(B, C, H, W)``. Random horizontal flips are
applied per item (in the workers) or per batch (in memory), each decided by
``(seed, epoch, index)`` alone (see
:mod:`lightning_gen.data._sampling`), so a resumed run flips exactly as an
uninterrupted one, with any number of workers. :meth:`on_after_batch_transfer`
turns images into float in ``[-1, 1]`` on the training device.

Not covered here: downloading, test splits, per-class balancing, augmentations
beyond horizontal flips.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from lightning_gen.data import decoding
from lightning_gen.data._base import (
    ImageDataModuleBase,
    check_fraction,
    check_positive_int,
    default_num_workers,
)
from lightning_gen.data._sampling import EpochIndex, EpochItemDataset, derive_seed
from lightning_gen.data.cache import ImageCache, decode_into, default_cache_dir, load_or_build_cache
from lightning_gen.data.folder_scan import (  # scan_image_folder and its types live there; re-exported here
    DEFAULT_EXTENSIONS,
    FileRecord,
    FolderIndex,
    _check_root,
    _normalise_extensions,
    scan_image_folder,
)
from lightning_gen.data.decoding import (
    DECODER_VERSION,
    DEFAULT_BACKGROUND,
    BadImageWarning,
    ImageDecodeError,
)

__all__ = ["DEFAULT_EXTENSIONS", "IN_MEMORY_BYTES", "FolderIndex", "ImageFolderDataModule", "scan_image_folder"]

_SHOWN_PATHS = 5  # bad files listed by name in a warning; the rest are counted
# With on_error="skip", give up on an item after this many unreadable files in a row.
# Substitutes are drawn at random, so with half the files broken the chance of
# reaching it is 2**-64; reaching it means the split is essentially unreadable.
_MAX_ATTEMPTS = 64
#: With ``in_memory=None``, folders whose decoded uint8 images take at most this many bytes are kept in memory.
IN_MEMORY_BYTES = 256 * 2**20
# Folders with fewer files than this are decoded in the main process when loaded into memory:
# starting worker processes (fork, imports) costs more than decoding a few thousand small files.
_DECODE_IN_PROCESS_BELOW = 4096


class ImageFolderDataModule(ImageDataModuleBase):
    """Images from a folder on disk, as a LightningDataModule for generative models.

    Subfolders of ``root`` are classes; a flat folder is unlabeled. Images are
    decoded with Pillow (every common mode, EXIF orientation, first frame; see
    :mod:`lightning_gen.data.decoding`), the shorter side is resized to
    ``image_size`` with antialiasing and the centre is cropped. Batches reach the
    LightningModule as float in ``[-1, 1]``, shape ``(B, C, H, W)``, plus int64
    labels for labelled folders. See the module docstring for the split and for
    how bad files are handled.

    Args:
        root: Folder of images. Top-level subfolders containing images are classes.
        image_size: Side of the square images fed to the model, in pixels.
        channels: 3 for RGB (grayscale files are replicated), 1 for grayscale.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes that decode images. Default: 0 when the
            images are kept in memory, else the number of CPU cores, at most 4.
        val_fraction: Share of the files held out for validation, in [0, 1). Which
            files is fixed by ``seed`` and each file's path, so adding files never
            moves existing files between splits.
        seed: Seed of the split, the shuffling order, the flips and the substitutes
            for bad files: each is a function of ``(seed, epoch, index)`` only.
        recursive: Also find images in folders nested inside the class folders.
        extensions: File extensions to load, any case, with or without the dot.
        random_flip: Flip training images horizontally with probability 0.5, decided per
            image and epoch by ``seed``, so resumed runs flip exactly as uninterrupted ones.
        on_error: What to do with a file that can't be decoded: ``"skip"`` leaves it
            out and warns once with the count and the first paths; ``"raise"``
            stops with an error naming the file and the reason.
        cache: Decode every image once into a uint8 array on disk and memory-map it,
            so later epochs and runs don't decode. Uses ``N * C * image_size**2``
            bytes; rebuilt automatically when the folder or the settings change.
        cache_dir: Where caches are stored. Default ``$LIGHTNING_GEN_CACHE/data`` or
            ``~/.cache/lightning_gen/data``.
        in_memory: Decode every image once in ``setup`` and train from one uint8 tensor in
            memory (no decoding, no workers per epoch; same batches). ``None`` (default):
            when the decoded images take at most :data:`IN_MEMORY_BYTES`. With ``cache=True``
            the cached array is read into memory instead of decoding.

    ``root`` and ``cache_dir`` are kept in :attr:`hparams` as strings, so checkpoints hold no
    ``pathlib`` objects and load with ``torch.load(..., weights_only=True)``, as Lightning does
    when resuming.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for i in range(8):
        ...     Image.new("RGB", (40, 30), (30 * i, 0, 0)).save(root / f"{i}.png")
        >>> dm = ImageFolderDataModule(root, image_size=16, batch_size=4, num_workers=0)
        >>> dm.setup("fit")
        >>> images = next(iter(dm.train_dataloader()))  # unlabeled: just images
        >>> images.shape, images.dtype, dm.num_classes
        (torch.Size([4, 3, 16, 16]), torch.uint8, 0)
        >>> dm.on_after_batch_transfer(images, 0).dtype  # what the LightningModule gets
        torch.float32
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        channels: int = 3,
        batch_size: int = 64,
        num_workers: int | None = None,
        val_fraction: float = 0.05,
        seed: int = 0,
        recursive: bool = True,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        random_flip: bool = True,
        on_error: Literal["skip", "raise"] = "skip",
        cache: bool = False,
        cache_dir: str | Path | None = None,
        in_memory: bool | None = None,
    ) -> None:
        super().__init__()
        # save_hyperparameters() records these locals as they are now: plain strings, because
        # Lightning resumes with torch.load(weights_only=True), which refuses pathlib objects.
        root = os.fspath(root)
        cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        self.root = _check_root(root)
        self.image_size = check_positive_int("image_size", image_size)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
        self.channels = int(channels)
        self.batch_size = check_positive_int("batch_size", batch_size)
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
        ):
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}.")
        # None is resolved in setup(), once it is known whether the images stay in memory.
        self._num_workers_given = num_workers
        self.num_workers = num_workers if num_workers is not None else default_num_workers()
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.seed = int(seed)
        self.recursive = bool(recursive)
        self.extensions = _normalise_extensions(extensions)
        self.random_flip = bool(random_flip)
        if on_error not in ("skip", "raise"):
            raise ValueError(
                f"on_error must be 'skip' (leave bad files out with a warning) or 'raise' "
                f"(stop at the first bad file), got {on_error!r}."
            )
        self.on_error = on_error
        self.cache = bool(cache)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        if in_memory is not None and not isinstance(in_memory, bool):
            raise ValueError(
                f"in_memory must be True, False or None (automatic below {IN_MEMORY_BYTES} bytes "
                f"of decoded images), got {in_memory!r}."
            )
        self.in_memory = in_memory
        self.save_hyperparameters()
        self._index: FolderIndex | None = None
        self._image_cache: ImageCache | None = None
        self._datasets: dict[str, Dataset] = {}
        self._setup_reported = False

    # ----------------------------------------------------------------- attributes

    @property
    def index(self) -> FolderIndex:
        """The scan of ``root`` (done on first use, then kept)."""
        if self._index is None:
            self._index = scan_image_folder(self.root, self.extensions, self.recursive)
            if self._index.ignored_loose_files:
                warnings.warn(
                    f"Ignoring {self._index.ignored_loose_files} image(s) directly in "
                    f"'{self.root}': it has class subfolders, and loose images have no "
                    "class. Move them into a class folder to use them.",
                    UserWarning,
                    stacklevel=2,
                )
        return self._index

    @property
    def class_names(self) -> list[str]:
        """Class folder names, sorted; label ``i`` is ``class_names[i]``. Empty when unlabeled."""
        return list(self.index.class_names)

    @property
    def keeps_in_memory(self) -> bool:
        """Whether training reads decoded images from memory (``in_memory``, or the automatic choice).

        Automatic: the decoded uint8 images of every file found take at most :data:`IN_MEMORY_BYTES`.
        """
        if self.in_memory is not None:
            return self.in_memory
        decoded_bytes = len(self.index.records) * self.channels * self.image_size**2
        return decoded_bytes <= IN_MEMORY_BYTES

    def split_records(self, split: str = "train") -> list[FileRecord]:
        """The files of ``split`` (``"train"`` or ``"val"``), including not-yet-known bad ones."""
        want_val = self._check_split(split) == "val"
        return [
            record
            for record in self.index.records
            if _in_validation(record.relpath, self.seed, self.val_fraction) == want_val
        ]

    def fingerprint(self, split: str = "train") -> str:
        """Hex digest of everything that determines the images of ``split``.

        Covers each file's relative path, size, modification time and label, the
        image size, channels and decoder version, and (for ``"train"``) random flips.
        """
        records = self.split_records(split)
        settings = {
            "kind": "image_folder",
            "decoder": DECODER_VERSION,
            "image_size": self.image_size,
            "channels": self.channels,
            "background": list(DEFAULT_BACKGROUND),
            "random_flip": self.random_flip and split == "train",
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        for record in records:
            fields = (record.relpath, record.size, record.mtime_ns, record.label)
            digest.update("".join(f"\0{value}" for value in fields).encode())
        return digest.hexdigest()

    # ---------------------------------------------------------------- Lightning hooks

    def prepare_data(self) -> None:
        """Build the cache when ``cache=True`` (Lightning runs this on one process per node)."""
        if self.cache:
            self._load_or_build_cache()

    def setup(self, stage: str | None = None) -> None:
        """Scan the folder, open the cache if any, and build both splits."""
        if self._datasets:
            return
        index = self.index
        bad = list(index.rejected)
        image_cache = self._load_or_build_cache() if self.cache else None
        in_memory = self.keeps_in_memory
        if self._num_workers_given is None:
            self.num_workers = 0 if in_memory else default_num_workers()
        if image_cache is not None:
            bad.extend(image_cache.failures.items())
        memory: _DecodedImages | None = None
        if in_memory:
            memory = self._decode_into_memory(image_cache)
            bad.extend(memory.failures.items())
        if bad:
            bad.sort()
            if self.on_error == "raise":
                relpath, reason = bad[0]
                raise decoding._file_error(self.root / relpath, reason)
            if not self._setup_reported:
                warnings.warn(_skipped_message(self.root, bad), BadImageWarning, stacklevel=2)
                self._setup_reported = True
        bad_paths = {relpath for relpath, _ in bad}
        for split in ("train", "val"):
            records = [r for r in self.split_records(split) if r.relpath not in bad_paths]
            if split == "train" and not records:
                raise ValueError(
                    f"No readable training images in '{self.root}': {len(index.records)} "
                    f"file(s) found, {len(bad_paths)} unreadable, and val_fraction="
                    f"{self.val_fraction} put the rest in validation. Add images or lower "
                    "val_fraction."
                )
            self._datasets[split] = self._make_dataset(records, image_cache, memory)

    def train_dataloader(self) -> DataLoader:
        dataset = self._require("train")
        options = self._loader_options()
        view = _InMemoryTrainingView if isinstance(dataset, _InMemoryImageDataset) else EpochItemDataset
        return _BadFileReportingLoader(
            view(dataset, seed=self.seed, random_flip=self.random_flip),
            sampler=self._training_sampler(len(dataset)),
            collate_fn=_Collate(),
            # A last batch of a single image breaks batch-norm layers in training.
            drop_last=len(dataset) >= options["batch_size"],
            **options,
        )

    def val_dataloader(self) -> DataLoader | list:
        dataset = self._require("val")
        if len(dataset) == 0:
            return []  # Lightning reads an empty list as "no validation"
        return _BadFileReportingLoader(
            dataset, shuffle=False, collate_fn=_Collate(), **self._loader_options()
        )

    # ------------------------------------------------------------------- internals

    def _require(self, split: str) -> Dataset:
        if split not in self._datasets:
            self.setup()
        return self._datasets[split]

    def _load_or_build_cache(self) -> ImageCache:
        if self._image_cache is None:
            files = [(r.relpath, r.size, r.mtime_ns) for r in self.index.records]
            self._image_cache = load_or_build_cache(
                self.root,
                files,
                image_size=self.image_size,
                channels=self.channels,
                cache_dir=self.cache_dir if self.cache_dir is not None else default_cache_dir(),
                num_workers=self.num_workers,
                on_error=self.on_error,
            )
        return self._image_cache

    def _decode_into_memory(self, image_cache: ImageCache | None) -> _DecodedImages:
        """Every file of the folder as one uint8 array: read from the cache, or decoded now."""
        records = self.index.records
        row_of = {record.relpath: row for row, record in enumerate(records)}
        if image_cache is not None:
            rows = [image_cache.row_of.get(r.relpath, 0) for r in records]
            return _DecodedImages(np.ascontiguousarray(image_cache.open_images()[rows]), row_of, {})
        images = np.zeros((len(records), self.channels, self.image_size, self.image_size), np.uint8)
        workers = self.num_workers if len(records) >= _DECODE_IN_PROCESS_BELOW else 0
        failures = decode_into(
            images, self.root, [r.relpath for r in records], workers, self.on_error
        )
        return _DecodedImages(images, row_of, failures)

    def _make_dataset(
        self,
        records: list[FileRecord],
        image_cache: ImageCache | None,
        memory: _DecodedImages | None = None,
    ) -> Dataset:
        labels = [r.label for r in records] if self.index.class_names else None
        if memory is not None:
            rows = torch.tensor([memory.row_of[r.relpath] for r in records], dtype=torch.long)
            images = torch.from_numpy(memory.images)[rows]  # a copy: the split only
            return _InMemoryImageDataset(images, labels)
        if image_cache is not None:
            rows = np.array([image_cache.row_of[r.relpath] for r in records], dtype=np.int64)
            return _CachedImageDataset(str(image_cache.array_path), rows, labels)
        return _ImageFileDataset(
            str(self.root),
            [r.relpath for r in records],
            labels,
            image_size=self.image_size,
            channels=self.channels,
            on_error=self.on_error,
            seed=self.seed,
        )

    def __getstate__(self) -> dict[str, Any]:
        # Datasets are rebuilt by setup() in each process; the scan is kept so DDP
        # spawn processes don't all rescan the folder.
        state = self.__dict__.copy()
        state["_datasets"] = {}
        return state


# ------------------------------------------------------------------------ datasets
# Both datasets yield (uint8 image (C, H, W), label or -1, failures) where failures
# is a tuple of (absolute path, reason) for files replaced while producing the item.


class _ImageFileDataset(Dataset):
    def __init__(
        self,
        root: str,
        relpaths: list[str],
        labels: list[int] | None,
        *,
        image_size: int,
        channels: int,
        on_error: str,
        seed: int,
    ) -> None:
        self.root = root
        self.relpaths = relpaths
        self.labels = labels
        self.image_size = image_size
        self.channels = channels
        self.on_error = on_error
        self.seed = seed
        self.reported: set[str] = set()  # used in the main process only, by the loader

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, tuple]:
        failures = []
        candidate = index
        # Substitutes come from a generator seeded by (seed, item), so the same item is
        # replaced by the same image in every epoch, worker count and run.
        substitutes = random.Random(derive_seed("substitute", self.seed, index))
        for _ in range(_MAX_ATTEMPTS):
            path = os.path.join(self.root, self.relpaths[candidate])
            try:
                image = decoding.decode_image(path, self.image_size, self.channels)
            except Exception as error:  # noqa: BLE001 - every failure means a bad file
                reason = decoding._describe_error(error, path)
                if self.on_error == "raise":
                    raise decoding._file_error(path, reason) from error
                failures.append((path, reason))
                candidate = substitutes.randrange(len(self.relpaths))
                continue
            label = self.labels[candidate] if self.labels is not None else -1
            return torch.from_numpy(image), label, tuple(failures)
        distinct = list(dict(failures).items())[:_SHOWN_PATHS]
        shown = "; ".join(f"'{path}' ({reason})" for path, reason in distinct)
        raise ImageDecodeError(
            f"{_MAX_ATTEMPTS} image files in a row could not be decoded in '{self.root}', "
            f"e.g. {shown}. Almost no file of this split is readable: check that these are "
            "image files Pillow can open."
        )


class _CachedImageDataset(Dataset):
    def __init__(self, array_path: str, rows: np.ndarray, labels: list[int] | None) -> None:
        self.array_path = array_path
        self.rows = rows
        self.labels = labels
        self._images: np.ndarray | None = None  # opened lazily, once per process
        self.reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, tuple]:
        if self._images is None:
            self._images = np.load(self.array_path, mmap_mode="r")
        image = torch.from_numpy(np.array(self._images[self.rows[index]]))
        return image, (self.labels[index] if self.labels is not None else -1), ()

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle the memory map: numpy would copy the whole array into the pickle.
        state = self.__dict__.copy()
        state["_images"] = None
        return state


class _DecodedImages(NamedTuple):
    images: np.ndarray  # uint8 (N, C, S, S), one row per file of the scan
    row_of: dict[str, int]  # relative path -> row
    failures: dict[str, str]  # relative path -> reason, files that could not be decoded


class _InMemoryImageDataset(Dataset):
    """A split held as one uint8 tensor; whole batches come out of one indexing (``__getitems__``)."""

    def __init__(self, images: torch.Tensor, labels: list[int] | None) -> None:
        self.images = images
        self.labels = torch.tensor(labels, dtype=torch.long) if labels is not None else None
        self.reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, tuple]:
        label = int(self.labels[index]) if self.labels is not None else -1
        return self.images[index], label, ()

    def __getitems__(self, indices: list[int]) -> _RawBatch:
        # The DataLoader's fetcher calls this with a whole batch of indices (torch >= 2.0).
        rows = torch.as_tensor(indices, dtype=torch.long)
        labels = self.labels[rows] if self.labels is not None else None
        return _RawBatch(self.images[rows], labels, [])


class _InMemoryTrainingView(EpochItemDataset):
    """:class:`EpochItemDataset` for in-memory splits: the same images and flips, a batch at a time."""

    dataset: _InMemoryImageDataset

    def __getitems__(self, keys: list[int | EpochIndex]) -> _RawBatch:
        indices = [key.index if isinstance(key, EpochIndex) else key for key in keys]
        batch = self.dataset.__getitems__(indices)
        if not self.random_flip:
            return batch
        # The same decision as EpochItemDataset.__getitem__, item by item; plain indices never flip.
        flips = [
            isinstance(key, EpochIndex) and derive_seed("flip", self.seed, key.epoch, key.index) & 1 == 1
            for key in keys
        ]
        if not any(flips):
            return batch
        mask = torch.tensor(flips).view(-1, 1, 1, 1)
        return batch._replace(images=torch.where(mask, batch.images.flip(-1), batch.images))


# ---------------------------------------------------------------- batches and loader


class _RawBatch(NamedTuple):
    """What workers send to the main process. A NamedTuple so that pin_memory recurses."""

    images: torch.Tensor  # uint8 (B, C, H, W)
    labels: torch.Tensor | None  # int64 (B,), None when unlabeled
    failures: list  # (path, reason) of files replaced in this batch


class _Collate:
    """Stack uint8 images, keep labels and failures (flips happen per item, before)."""

    def __call__(self, samples: list[tuple[torch.Tensor, int, tuple]] | _RawBatch) -> _RawBatch:
        if isinstance(samples, _RawBatch):  # an in-memory split already made the whole batch
            return samples
        # default_collate stacks straight into shared memory inside a worker.
        images = default_collate([image for image, _, _ in samples])
        labels = None
        if samples[0][1] >= 0:
            labels = torch.tensor([label for _, label, _ in samples], dtype=torch.long)
        failures = [failure for _, _, fails in samples for failure in fails]
        return _RawBatch(images, labels, failures)


class _BadFileReportingLoader(DataLoader):
    """A DataLoader that yields ``images`` or ``(images, labels)`` and reports bad files.

    It subclasses DataLoader without changing ``__init__``, so Lightning can
    re-create it with a distributed sampler under DDP.
    """

    def __iter__(self) -> Iterator[Any]:
        return self._batches(super().__iter__())

    def _batches(self, raw_batches: Iterator[_RawBatch]) -> Iterator[Any]:
        seen = _reported_files(self.dataset)
        new: dict[str, str] = {}
        try:
            for raw in raw_batches:
                for path, reason in raw.failures:
                    if path not in seen:
                        new.setdefault(path, reason)
                yield raw.images if raw.labels is None else (raw.images, raw.labels)
        finally:
            # Runs when the pass ends, or when the consumer stops early and drops us.
            if new:
                seen.update(new)
                warnings.warn(
                    _skipped_message(None, sorted(new.items()), replaced=True),
                    BadImageWarning,
                    stacklevel=2,
                )


# ------------------------------------------------------------------------- helpers


def _skipped_message(
    root: Path | None, bad: list[tuple[str, str]], replaced: bool = False
) -> str:
    where = f" in '{root}'" if root is not None else ""
    shown = "; ".join(f"'{path}' ({reason})" for path, reason in bad[:_SHOWN_PATHS])
    more = f"; and {len(bad) - _SHOWN_PATHS} more" if len(bad) > _SHOWN_PATHS else ""
    what = (
        "each was replaced in its batch by another image"
        if replaced
        else "they are left out of both splits"
    )
    return (
        f"Skipped {len(bad)} unreadable image file(s){where}: {shown}{more}. With "
        f"on_error='skip' {what}; pass on_error='raise' to stop at the first bad file."
    )


def _reported_files(dataset: Any) -> set[str]:
    """The ``reported`` set of the file dataset inside wrappers (training view, ``Subset``)."""
    while not hasattr(dataset, "reported") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return getattr(dataset, "reported", set())


def _in_validation(relpath: str, seed: int, val_fraction: float) -> bool:
    if val_fraction <= 0.0:
        return False
    digest = hashlib.blake2b(f"{seed}\0{relpath}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < val_fraction
