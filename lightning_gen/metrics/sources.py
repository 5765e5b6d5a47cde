"""Where the images of one side of a comparison come from: folders, tensors, models, checkpoints, zoo names and
statistics files, opened the same way for the real and the generated side.

Folders are read with the data modules' own decoder (:mod:`lightning_gen.data.decoding`: every format and Pillow mode
they accept, EXIF orientation, alpha composited onto white, 16-bit scaled), the same files
``ImageFolderDataModule`` finds (class subfolders included), so ``lightning-gen fid FOLDER`` and ``FIDCallback`` on
that folder see the same pixels. :func:`real_subset_indices` draws the seeded uniform random subset behind every
``num_real`` (the callbacks, ``lightning-gen fid --num-real`` and the sweep use it).

Not here: feature extraction and metrics (``evaluator.py``), caching (``cache.py``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_gen.metrics.cache import folder_fingerprint
from lightning_gen.metrics.statistics_file import FIDStatistics, is_statistics_file, load_statistics

__all__ = [
    "DEFAULT_SUBSET_SEED",
    "ImageSource",
    "describe_datamodule_reading",
    "folder_reading",
    "generate_batches",
    "open_source",
    "real_subset_indices",
]

#: Seed of the real subset when ``num_real`` is given without a seed; recorded in the protocol.
DEFAULT_SUBSET_SEED = 0


def real_subset_indices(total: int, num_real: int | None, seed: int = DEFAULT_SUBSET_SEED) -> list[int]:
    """Sorted indices of a seeded, uniform random subset of ``num_real`` out of ``total`` items.

    Taking the first ``num_real`` files in path order would cover only the first class folders; a uniform draw
    covers every class in proportion (in expectation). ``None`` or ``num_real >= total`` selects everything.

    Args:
        total: Number of items to choose from.
        num_real: How many to choose.
        seed: Seed of the draw (``numpy.random.default_rng``); the same seed always gives the same subset.

    Example:
        >>> real_subset_indices(10, 4, seed=0)
        [2, 4, 5, 7]
        >>> real_subset_indices(3, None)
        [0, 1, 2]
    """
    if num_real is None or num_real >= total:
        return list(range(total))
    if num_real < 1:
        raise ValueError(f"num_real must be a positive integer, got {num_real!r}.")
    chosen = np.random.default_rng(seed).choice(total, size=num_real, replace=False)
    return sorted(int(index) for index in chosen)


@dataclass
class ImageSource:
    """The images (or statistics) of one side of a comparison."""

    description: str  # recorded in the protocol and used in messages
    kind: str  # "folder", "tensor", "model" or "statistics"
    count: int | None  # images batches() yields in total (statistics files: the count they record, if any)
    batches: Callable[[], Iterable[Tensor]] | None = None  # None for statistics files
    fingerprint: str | None = None  # set when the images can be cached by content identity
    sample_seed: int | None = None  # set when the images are generated here
    subset_seed: int | None = None  # set when a random subset of a folder is used
    decoding: str | None = None  # how files became pixels
    resize: str | None = None  # how images were sized before the extractor
    statistics: FIDStatistics | None = None  # set for statistics files
    notes: list[str] = field(default_factory=list)


def folder_reading(image_size: int | None) -> tuple[str, str]:
    """``(decoding, resize)`` descriptions of how a folder is read, for the protocol record.

    Example:
        >>> folder_reading(None)[1]
        'native size'
    """
    from lightning_gen.data.decoding import DECODER_VERSION

    decoding = (
        f"lightning-gen decoder v{DECODER_VERSION} (Pillow; every mode the data modules accept, EXIF orientation, "
        f"first frame, alpha over white, 16-bit/float scaled; RGB)"
    )
    if image_size is None:
        return decoding, "native size"
    return decoding, f"shorter side to {image_size} px (bicubic, antialiased) + centre crop"


def describe_datamodule_reading(datamodule: Any, split: str) -> tuple[str, str]:
    """``(decoding, resize)`` descriptions of how a data module's split reaches the metrics, for the protocol."""
    from lightning_gen.data import ImageFolderDataModule, ShapesDataModule

    if isinstance(datamodule, ImageFolderDataModule):
        decoding, resize = folder_reading(datamodule.image_size)
        return f"{decoding}; {type(datamodule).__name__}:{split}, no flips", resize
    if isinstance(datamodule, ShapesDataModule):
        return f"rendered procedurally (ShapesDataModule:{split})", f"rendered at {datamodule.image_size} px"
    return f"as yielded by {type(datamodule).__name__}.{split}_dataloader()", "as yielded by the data module"


class _DecodedFiles(Dataset):
    """Files decoded with the data modules' decoder; unreadable files give ``None`` (left out with a warning)."""

    def __init__(self, paths: Sequence[str], image_size: int | None) -> None:
        self.paths = list(paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor | None, str, str | None]:
        from lightning_gen.data import decoding

        path = self.paths[index]
        try:
            if self.image_size is None:
                array = np.asarray(decoding.load_image(path, 3)).transpose(2, 0, 1)
            else:
                array = decoding.decode_image(path, self.image_size, 3)
        except Exception as error:  # noqa: BLE001 - every failure means a bad file, reported by name
            return None, path, decoding._describe_error(error, path)
        return torch.from_numpy(np.ascontiguousarray(array)), path, None


def _keep_list(samples: list) -> list:
    return samples


def _folder_source(
    folder: Path, *, num_real: int | None, subset_seed: int, image_size: int | None, batch_size: int,
    num_workers: int, recursive: bool,
) -> ImageSource:
    from lightning_gen.data import scan_image_folder

    index = scan_image_folder(folder, recursive=recursive)
    paths = [str(folder / record.relpath) for record in index.records]
    notes = [f"{len(index.rejected)} unreadable file(s) left out, e.g. {index.rejected[0][0]}"] if index.rejected else []
    chosen = real_subset_indices(len(paths), num_real, subset_seed)
    subset = num_real is not None and len(chosen) < len(paths)
    if num_real is not None and num_real > len(paths):
        warnings.warn(f"num_real={num_real} but {folder} has only {len(paths)} images; using all of them.", stacklevel=3)
    paths = [paths[i] for i in chosen]
    decoding_text, resize = folder_reading(image_size)
    fingerprint = folder_fingerprint(folder, paths, f"{decoding_text}; {resize}")

    def batches() -> Iterator[Tensor]:
        loader = DataLoader(
            _DecodedFiles(paths, image_size), batch_size=batch_size, num_workers=num_workers, collate_fn=_keep_list
        )
        bad: list[tuple[str, str]] = []
        for samples in loader:
            bad.extend((path, reason) for image, path, reason in samples if image is None)
            images = [image for image, _, _ in samples if image is not None]
            # Native sizes may differ from file to file: each run of equal sizes is one extractor batch (the
            # extractor resizes to its own input size anyway).
            start = 0
            for end in range(1, len(images) + 1):
                if end == len(images) or images[end].shape != images[start].shape:
                    yield torch.stack(images[start:end])
                    start = end
        if bad:
            shown = "; ".join(f"{path} ({reason})" for path, reason in bad[:5])
            warnings.warn(f"Left out {len(bad)} unreadable image file(s) of {folder}: {shown}", stacklevel=2)

    return ImageSource(
        str(folder), "folder", len(paths), batches, fingerprint=fingerprint,
        subset_seed=subset_seed if subset else None, decoding=decoding_text, resize=resize, notes=notes,
    )


def generate_batches(model: Any, num_samples: int, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Yield ``num_samples`` generated images in batches; batch ``b`` is ``model.sample(size, seed=seed + b)``.

    Seeding per batch makes the samples a function of (seed, batch_size) alone, on any device and process count.
    """
    for index, start in enumerate(range(0, num_samples, batch_size)):
        with torch.no_grad():
            images = model.sample(min(batch_size, num_samples - start), seed=seed + index)
        yield images


def _model_source(model: Any, description: str, *, num_samples: int, batch_size: int, seed: int) -> ImageSource:
    if not callable(getattr(model, "sample", None)):
        raise TypeError(
            f"{description} has no sample(n, seed=...) method; expected an image folder, an image tensor, a .npz "
            f"statistics file, a .ckpt, a zoo name, or a GANModule/VAE/zoo model."
        )
    return ImageSource(
        description, "model", num_samples, lambda: generate_batches(model, num_samples, batch_size, seed),
        sample_seed=seed, decoding="generated (float in [-1, 1], quantized by rounding)", resize="native size",
    )


def _tensor_source(images: Tensor, description: str, batch_size: int) -> ImageSource:
    if images.dim() != 4:
        raise ValueError(f"{description} must be an image tensor (N, C, H, W), got shape {tuple(images.shape)}.")
    decoding = "uint8 tensor as given" if images.dtype == torch.uint8 else "float tensor in [-1, 1], quantized by rounding"
    return ImageSource(
        description, "tensor", images.shape[0], lambda: images.split(batch_size), decoding=decoding, resize="native size"
    )


def open_source(
    spec: Any,
    role: str,
    *,
    num_samples: int,
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    num_real: int | None = None,
    subset_seed: int = DEFAULT_SUBSET_SEED,
    image_size: int | None = None,
    num_workers: int = 0,
    recursive: bool = True,
) -> ImageSource:
    """Open one side of a comparison.

    Args:
        spec: An image folder, a ``.npz`` statistics file, a ``.ckpt`` file, a zoo name or Hub id, a module with
            ``sample(n, seed=...)``, or an image tensor (N, C, H, W), uint8 or float in [-1, 1].
        role: ``"real"`` or ``"fake"``, for messages.
        num_samples: Images to generate when ``spec`` is a model.
        seed: Base seed of generated batches (batch ``b`` uses ``seed + b``).
        batch_size: Images per batch.
        device: Where a loaded model runs.
        num_real: Use a seeded uniform random subset of this many images of a folder (see
            :func:`real_subset_indices`).
        subset_seed: Seed of that subset.
        image_size: Resize folder images as the data modules do (shorter side, then centre crop); ``None`` keeps
            their native size.
        num_workers: Folder decoding processes.
        recursive: Also read images in folders nested below the class folders, as ``ImageFolderDataModule`` does.

    Raises:
        FileNotFoundError, ValueError, TypeError, LookupError: The source cannot be opened (the message says why).
    """
    if isinstance(spec, Tensor):
        return _tensor_source(spec, f"{role} tensor", batch_size)
    if isinstance(spec, (str, os.PathLike)):
        if is_statistics_file(spec):
            statistics = load_statistics(spec)
            return ImageSource(
                str(spec), "statistics", statistics.count, statistics=statistics,
                decoding=(statistics.protocol or {}).get("real_decoding"), resize=(statistics.protocol or {}).get("real_resize"),
            )
        if Path(spec).is_dir():
            return _folder_source(
                Path(spec), num_real=num_real, subset_seed=subset_seed, image_size=image_size, batch_size=batch_size,
                num_workers=num_workers, recursive=recursive,
            )
        from lightning_gen.sampling import load_generative_module  # loading models pulls in the training stack

        model = load_generative_module(str(spec), device)
        return _model_source(model, str(spec), num_samples=num_samples, batch_size=batch_size, seed=seed)
    return _model_source(spec, f"{role} {type(spec).__name__}", num_samples=num_samples, batch_size=batch_size, seed=seed)
