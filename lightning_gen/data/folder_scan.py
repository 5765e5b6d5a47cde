"""Finding the images of a folder and their classes: :func:`scan_image_folder`, without decoding anything.

What this module is for: the layout rules of :class:`~lightning_gen.data.ImageFolderDataModule` (class subfolders,
hidden names, extensions, nested folders) and the cheap checks that run while scanning (empty files, files whose
metadata can't be read). What it is not: decoding, splitting or loading (:mod:`lightning_gen.data.image_folder`,
:mod:`lightning_gen.data.decoding`), which re-export what is defined here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from lightning_gen.data import decoding

__all__ = ["DEFAULT_EXTENSIONS", "FileRecord", "FolderIndex", "scan_image_folder"]

#: Extensions searched by default (compared case-insensitively).
DEFAULT_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
)


class FileRecord(NamedTuple):
    """One candidate image found by :func:`scan_image_folder`."""

    relpath: str  # relative to the root, "/"-separated
    size: int  # bytes
    mtime_ns: int
    label: int  # class index, -1 when the folder is unlabeled


@dataclass
class FolderIndex:
    """What :func:`scan_image_folder` found.

    Attributes:
        root: The scanned folder.
        class_names: Sorted class folder names; empty for an unlabeled folder.
        records: Candidate images sorted by relative path.
        rejected: ``(relative path, reason)`` of files already known to be bad
            (empty files, files whose metadata can't be read).
        ignored_loose_files: Images directly in ``root`` left out because class
            folders exist next to them.
    """

    root: Path
    class_names: list[str]
    records: list[FileRecord]
    rejected: list[tuple[str, str]] = field(default_factory=list)
    ignored_loose_files: int = 0


def scan_image_folder(
    root: str | Path,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    recursive: bool = True,
) -> FolderIndex:
    """Find the images under ``root`` and their classes (see the module docstring).

    Args:
        root: Folder to scan.
        extensions: File extensions to accept, with or without the dot, any case.
        recursive: Also search folders nested below the class folders.

    Returns:
        A :class:`FolderIndex`.

    Raises:
        FileNotFoundError: If ``root`` does not exist, or contains no matching file.
        NotADirectoryError: If ``root`` is a file.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ["dogs/a.png", "cats/b.JPG", "cats/.hidden.png", "cats/notes.txt"]:
        ...     (root / name).parent.mkdir(exist_ok=True)
        ...     Image.new("RGB", (8, 8)).save(root / name, format="PNG")
        >>> index = scan_image_folder(root)
        >>> index.class_names, [(r.relpath, r.label) for r in index.records]
        (['cats', 'dogs'], [('cats/b.JPG', 0), ('dogs/a.png', 1)])
    """
    root = _check_root(root)
    suffixes = _normalise_extensions(extensions)
    loose: list[os.DirEntry] = []
    class_files: dict[str, list[tuple[str, os.DirEntry]]] = {}
    for entry in _list_directory(root):
        if entry.name.startswith("."):
            continue
        if _is_dir(entry):
            found = list(_find_images(Path(entry.path), entry.name, suffixes, recursive))
            if found:
                class_files[entry.name] = found
        elif _has_suffix(entry.name, suffixes):
            loose.append(entry)

    class_names = sorted(class_files)
    candidates: list[tuple[str, os.DirEntry, int]] = []
    if class_names:
        for label, name in enumerate(class_names):
            candidates.extend((relpath, entry, label) for relpath, entry in class_files[name])
    else:
        candidates.extend((entry.name, entry, -1) for entry in loose)
    if not candidates:
        raise FileNotFoundError(
            f"No image files with extensions {', '.join(suffixes)} found in '{root}'"
            f"{' or its subfolders' if recursive else ''} (names starting with '.' are "
            "ignored). Check the path, or pass extensions=[...] listing the file types "
            "of your images."
        )

    records, rejected = [], []
    for relpath, entry, label in candidates:
        try:
            stat = entry.stat()  # follows symlinks: a dangling link fails here
        except OSError as error:
            rejected.append((relpath, decoding._describe_error(error, entry.path)))
            continue
        if stat.st_size == 0:
            rejected.append((relpath, "the file is empty (0 bytes)"))
            continue
        records.append(FileRecord(relpath, stat.st_size, stat.st_mtime_ns, label))
    records.sort()
    rejected.sort()
    ignored = len(loose) if class_names else 0
    return FolderIndex(root, class_names, records, rejected, ignored)


def _check_root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"Image folder '{root}' does not exist (resolved to '{path.absolute()}'). "
            "Check the path."
        )
    if not path.is_dir():
        raise NotADirectoryError(f"'{root}' is a file; pass the folder that contains the images.")
    return path


def _normalise_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    normalised = tuple(
        sorted({("." + e.lower().lstrip(".")) for e in extensions if e.strip(". ")})
    )
    if not normalised:
        raise ValueError(
            "extensions must list at least one file extension, e.g. ['png', 'jpg'], "
            f"got {extensions!r}."
        )
    return normalised


def _has_suffix(name: str, suffixes: tuple[str, ...]) -> bool:
    return os.path.splitext(name)[1].lower() in suffixes


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, so linked class folders count
    except OSError:
        return False


def _list_directory(directory: Path) -> list[os.DirEntry]:
    with os.scandir(directory) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def _find_images(
    directory: Path, prefix: str, suffixes: tuple[str, ...], recursive: bool
) -> Iterator[tuple[str, os.DirEntry]]:
    """Yield ``(relative path, entry)`` of matching, non-hidden files below ``directory``."""
    visited: set[tuple[int, int]] = set()
    pending = [(directory, prefix)]
    while pending:
        folder, relative = pending.pop()
        try:
            identity = os.stat(folder)
            entries = _list_directory(folder)
        except OSError:
            continue  # an unreadable folder holds nothing we could load anyway
        # Followed symlinks can form loops; never enter the same folder twice.
        if (identity.st_dev, identity.st_ino) in visited:
            continue
        visited.add((identity.st_dev, identity.st_ino))
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                if recursive:
                    pending.append((Path(entry.path), f"{relative}/{entry.name}"))
            elif _has_suffix(entry.name, suffixes):
                yield f"{relative}/{entry.name}", entry
