"""Decode an image folder once into a memory-mapped uint8 array on disk.

With ``ImageFolderDataModule(cache=True)`` every file is decoded, resized and
centre-cropped once (by :func:`lightning_gen.data.decoding.decode_image`, in parallel
loader workers) and written into ``images.npy``, an array ``(N, C, S, S)`` of uint8
that later epochs and later runs read through ``numpy.memmap``: no decoding, and the
operating system's page cache shares the pages between worker processes.

A cache lives in ``<cache_dir>/<key>/`` where the key is a hash of every relative
path, file size and modification time, plus the image size, channel count and
decoder version. Adding, removing, replacing or touching a file, or changing the
transform settings, gives a new key and therefore a fresh cache; old caches are left
in place and can be deleted at any time. The default ``cache_dir`` is
``$LIGHTNING_GEN_CACHE/data`` or, when that variable is unset,
``~/.cache/lightning_gen/data``.

The cache is written into a temporary folder and renamed into place only when it is
complete, so an interrupted run leaves no half cache behind that a later run could
mistake for a finished one (a leftover ``.tmp-*`` folder after a hard kill is safe
to delete). Files that fail to decode are recorded in the cache's ``index.json`` and
reported again, per the data module's ``on_error`` policy, whenever it is loaded.

This is not a general array store: it holds exactly what the data module needs, and
it trusts the file metadata (a file rewritten with the same size and modification
time to the nanosecond is not noticed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_gen.data import decoding
from lightning_gen.data.decoding import DEFAULT_BACKGROUND, DECODER_VERSION

__all__ = ["ImageCache", "cache_key", "decode_into", "default_cache_dir", "load_or_build_cache"]

_FORMAT = 1
_ARRAY_FILE = "images.npy"
_INDEX_FILE = "index.json"  # written last: its presence marks a complete cache


def default_cache_dir() -> Path:
    """``$LIGHTNING_GEN_CACHE/data``, else ``~/.cache/lightning_gen/data``."""
    base = os.environ.get("LIGHTNING_GEN_CACHE")
    if base:
        return Path(base).expanduser() / "data"
    return Path.home() / ".cache" / "lightning_gen" / "data"


def cache_key(
    files: Sequence[tuple[str, int, int]],
    image_size: int,
    channels: int,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
) -> str:
    """Hex key of a cache: hash of ``(relative path, size, mtime_ns)`` of every file and
    of the settings that change the decoded pixels.

    Example:
        >>> a = cache_key([("cat/1.png", 120, 5)], image_size=32, channels=3)
        >>> b = cache_key([("cat/1.png", 120, 6)], image_size=32, channels=3)  # touched
        >>> a == b, len(a)
        (False, 32)
    """
    digest = hashlib.sha256()
    settings = {
        "format": _FORMAT,
        "decoder": DECODER_VERSION,
        "image_size": image_size,
        "channels": channels,
        "background": list(background),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for relpath, size, mtime_ns in files:
        digest.update(f"\0{relpath}\0{size}\0{mtime_ns}".encode())
    return digest.hexdigest()[:32]


class ImageCache:
    """A complete cache on disk: decoded images plus the list of files that failed.

    Attributes:
        directory: The cache folder.
        relpaths: Relative path of the file behind each row of :attr:`images`.
        failures: ``{relative path: reason}`` of files that could not be decoded; their
            rows hold zeros and must not be used.
    """

    def __init__(self, directory: Path, relpaths: list[str], failures: dict[str, str]) -> None:
        self.directory = Path(directory)
        self.relpaths = relpaths
        self.failures = failures
        self.row_of = {relpath: row for row, relpath in enumerate(relpaths)}

    @property
    def array_path(self) -> Path:
        return self.directory / _ARRAY_FILE

    def open_images(self) -> np.ndarray:
        """The images, ``uint8 (N, C, S, S)``, memory-mapped read-only."""
        return np.load(self.array_path, mmap_mode="r")

    @classmethod
    def load(cls, directory: Path, expected_shape: tuple[int, ...]) -> ImageCache | None:
        """Open a finished cache, or return None when it is missing or not usable."""
        try:
            with open(directory / _INDEX_FILE) as handle:
                index = json.load(handle)
            if index.get("format") != _FORMAT:
                return None
            shape = np.load(directory / _ARRAY_FILE, mmap_mode="r").shape
        except (OSError, ValueError):
            return None
        if tuple(shape) != tuple(expected_shape) or len(index["files"]) != shape[0]:
            return None
        return cls(directory, list(index["files"]), dict(index["failed"]))


def load_or_build_cache(
    root: str | Path,
    files: Sequence[tuple[str, int, int]],
    *,
    image_size: int,
    channels: int,
    cache_dir: str | Path | None = None,
    num_workers: int = 0,
    on_error: str = "skip",
    progress: bool = True,
) -> ImageCache:
    """Return the cache of these files, decoding them first when it doesn't exist yet.

    Args:
        root: Folder the relative paths are relative to.
        files: ``(relative path, size in bytes, mtime_ns)`` of every file to cache.
        image_size: Side of the decoded square images.
        channels: 1 or 3.
        cache_dir: Where caches live; default :func:`default_cache_dir`.
        num_workers: Loader worker processes that decode in parallel while building.
        on_error: ``"raise"`` stops at the first file that fails to decode with an
            :class:`~lightning_gen.data.decoding.ImageDecodeError` naming it (nothing is
            written); ``"skip"`` records the failure and goes on.
        progress: Show a progress bar while building.

    Returns:
        The loaded :class:`ImageCache`.

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (20, 10), "red").save(root / "a.png")
        >>> stat = (root / "a.png").stat()
        >>> cache = load_or_build_cache(root, [("a.png", stat.st_size, stat.st_mtime_ns)],
        ...     image_size=8, channels=3, cache_dir=tempfile.mkdtemp(), progress=False)
        >>> cache.open_images().shape, cache.failures
        ((1, 3, 8, 8), {})
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}.")
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = cache_key(files, image_size, channels)
    final = cache_dir / key
    shape = (len(files), channels, image_size, image_size)
    cache = ImageCache.load(final, shape)
    if cache is not None:
        return cache
    return _build(Path(root), files, final, shape, num_workers, on_error, progress)


def _build(
    root: Path,
    files: Sequence[tuple[str, int, int]],
    final: Path,
    shape: tuple[int, int, int, int],
    num_workers: int,
    on_error: str,
    progress: bool,
) -> ImageCache:
    from lightning.pytorch.utilities import rank_zero_info
    from tqdm.auto import tqdm

    final.parent.mkdir(parents=True, exist_ok=True)
    needed = int(np.prod(shape))
    free = shutil.disk_usage(final.parent).free
    if needed > free:
        raise OSError(
            f"The image cache needs {needed / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB "
            f"are free in '{final.parent}'. Pass cache_dir= a folder on a larger disk, "
            "or cache=False."
        )
    rank_zero_info(
        f"Caching {len(files)} images from '{root}' as {shape[2]}x{shape[3]} "
        f"({needed / 2**20:.1f} MiB) in '{final}'."
    )
    temporary = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        relpaths = [relpath for relpath, _, _ in files]
        array = np.lib.format.open_memmap(
            temporary / _ARRAY_FILE, mode="w+", dtype=np.uint8, shape=shape
        )
        with tqdm(total=len(files), desc="Caching images", unit="img", disable=not progress) as bar:
            failures = decode_into(array, root, relpaths, num_workers, on_error, bar.update)
        array.flush()
        del array
        index = {"format": _FORMAT, "root": str(root), "files": relpaths, "failed": failures}
        with open(temporary / _INDEX_FILE, "w") as handle:
            json.dump(index, handle)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(temporary, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    cache = ImageCache.load(final, shape)
    if cache is None:  # pragma: no cover - only if the disk changes under us
        raise OSError(f"The image cache just written to '{final}' cannot be read back.")
    return cache


def decode_into(
    array: np.ndarray,
    root: Path,
    relpaths: Sequence[str],
    num_workers: int,
    on_error: str,
    progress: Any = None,
) -> dict[str, str]:
    """Decode ``root / relpaths[i]`` into ``array[i]`` (shape ``(N, C, S, S)``, uint8), in parallel workers.

    Returns ``{relative path: reason}`` of the files that could not be decoded (their rows are left as
    they were); with ``on_error="raise"`` the first one raises :class:`ImageDecodeError` instead.
    ``progress``, when given, is called with the number of files done after each chunk.
    """
    failures: dict[str, str] = {}
    loader = DataLoader(
        _DecodeJobs(str(root), list(relpaths), array.shape[2], array.shape[1]),
        batch_size=32,
        num_workers=num_workers,
        collate_fn=_keep_as_list,
        # Its own generator: otherwise the loader draws a worker seed from the global RNG, and
        # a seeded run would train differently depending on whether the images were decoded here.
        generator=torch.Generator().manual_seed(0),
    )
    for results in loader:
        for row, image, reason in results:
            if image is None:
                if on_error == "raise":
                    raise decoding._file_error(Path(root) / relpaths[row], reason)
                failures[relpaths[row]] = reason
            else:
                array[row] = image
        if progress is not None:
            progress(len(results))
    return failures


def _publish(temporary: Path, final: Path) -> None:
    # rename() of a directory is atomic on POSIX, so readers see nothing or everything.
    try:
        os.rename(temporary, final)
    except OSError:
        if (final / _INDEX_FILE).exists():
            return  # another process finished the same cache first; ours is dropped
        shutil.rmtree(final, ignore_errors=True)  # an unusable leftover: replace it
        os.rename(temporary, final)


class _DecodeJobs(Dataset):
    """Item ``i`` is ``(i, uint8 array or None, failure reason or None)``."""

    def __init__(self, root: str, relpaths: list[str], image_size: int, channels: int) -> None:
        self.root = root
        self.relpaths = relpaths
        self.image_size = image_size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, row: int) -> tuple[int, Any, Any]:
        path = os.path.join(self.root, self.relpaths[row])
        try:
            # Looked up through the module on every call, so tests (and users) can
            # patch decoding.decode_image and see exactly when decoding happens.
            image = decoding.decode_image(path, self.image_size, self.channels)
        except Exception as error:  # noqa: BLE001 - any failure is a bad file
            return row, None, decoding._describe_error(error, path)
        return row, image, None


def _keep_as_list(batch: list) -> list:
    return batch
