"""On-disk cache of real-image statistics, so a second evaluation never reads the real images again.

An entry is keyed by the fingerprint of the real data (a data module's ``fingerprint(split)``, or
:func:`folder_fingerprint` for an image folder), the extractor's fingerprint (weights sha256), the requested
number of real images and the kind of statistics ("fid": running sums; "kid": the feature vectors). Any change to
those gives a new key, so a changed dataset or extractor can never be served stale numbers. Writes are atomic.

The directory is ``$LIGHTNING_GEN_CACHE/metrics``, else ``~/.cache/lightning_gen/metrics``; pass ``cache_dir`` to
the callbacks or to :func:`~lightning_gen.metrics.evaluate` to use another one. Entries are plain ``torch.save``
files, safe to delete at any time. This module does not compute statistics.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["CACHE_ENV", "RealStatisticsCache", "default_cache_dir", "folder_fingerprint"]

#: Environment variable with the root of lightning-gen's caches; metrics use its ``metrics`` subfolder.
CACHE_ENV = "LIGHTNING_GEN_CACHE"
# Bump when the meaning of a cached payload changes, so old entries are ignored rather than misread.
_FORMAT_VERSION = 2  # 2: real subsets are seeded random draws (1 took the first num_real)


def default_cache_dir() -> Path:
    """``$LIGHTNING_GEN_CACHE/metrics`` if the variable is set, else ``~/.cache/lightning_gen/metrics``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "lightning_gen"
    return base / "metrics"


def folder_fingerprint(folder: str | os.PathLike, files: Sequence[str | os.PathLike], loader: str) -> str:
    """Fingerprint of an image folder: relative paths, sizes and modification times of its files, and how they are read.

    Reading file metadata only (not contents) keeps this instant for 100k images; editing, adding, removing or
    touching a file changes it.

    Args:
        folder: The folder the files are in.
        files: The image files that will be read.
        loader: Description of how files become tensors (decoding, colour conversion, resizing).

    Returns:
        A hex sha256.
    """
    folder = Path(folder).resolve()
    entries = []
    for file in files:
        stat = os.stat(file)
        entries.append([os.path.relpath(Path(file).resolve(), folder), stat.st_size, stat.st_mtime_ns])
    text = json.dumps({"files": entries, "loader": loader}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class RealStatisticsCache:
    """A directory of cached real statistics.

    Args:
        directory: Where entries live; ``None`` means :func:`default_cache_dir`. Created on first write.

    Example:
        >>> import tempfile, torch
        >>> cache = RealStatisticsCache(tempfile.mkdtemp())
        >>> key = cache.key(kind="fid", data_fingerprint="d", extractor_fingerprint="e", num_real=None)
        >>> cache.load(key) is None
        True
        >>> _ = cache.save(key, {"n": 2, "sum": torch.zeros(3)})
        >>> cache.load(key)["n"]
        2
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()

    @staticmethod
    def key(
        *, kind: str, data_fingerprint: str, extractor_fingerprint: str, num_real: int | None, subset_seed: int | None = None
    ) -> str:
        """Cache key for one kind of statistics of one real dataset under one extractor.

        Args:
            kind: ``"fid"`` (sums), ``"kid"`` or ``"prdc"`` (features).
            data_fingerprint: Fingerprint of the real data.
            extractor_fingerprint: The extractor's weights fingerprint.
            num_real: Requested number of real images (``None``: all of them).
            subset_seed: Seed of the random subset when ``num_real`` is given.
        """
        description = {
            "format": _FORMAT_VERSION,
            "kind": kind,
            "data": data_fingerprint,
            "extractor": extractor_fingerprint,
            "num_real": num_real,
            "subset_seed": subset_seed if num_real is not None else None,
        }
        digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
        return f"{kind}-{digest[:40]}"

    def path(self, key: str) -> Path:
        """File of an entry."""
        return self.directory / f"{key}.pt"

    def load(self, key: str) -> dict[str, Any] | None:
        """The payload stored under ``key``, or ``None`` when absent or unreadable (it is then recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or foreign file must not stop an evaluation
            warnings.warn(f"Ignoring unreadable metrics cache entry {path} ({error}); it will be recomputed.")
            return None
        if not isinstance(payload, dict) or payload.get("key") != key:
            warnings.warn(f"Ignoring metrics cache entry {path}: it does not belong to key {key}.")
            return None
        return payload

    def save(self, key: str, payload: dict[str, Any]) -> Path:
        """Store ``payload`` under ``key`` atomically: readers see the old entry or the complete new one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        handle = tempfile.NamedTemporaryFile(dir=self.directory, prefix=f".{key}.", suffix=".tmp", delete=False)
        try:
            with handle:
                torch.save({**payload, "key": key}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, path)
        finally:
            if os.path.exists(handle.name):
                os.remove(handle.name)
        return path
