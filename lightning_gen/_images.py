"""Image conversions and sample-grid logging shared by the LightningModules, the CLI and the metrics.

Conventions: models work on float images in [-1, 1]; files, loaders and feature extractors work on
uint8 in [0, 255]. Converting float to uint8 rounds to nearest (truncation would darken every image
by half a grey level on average and shifts FID).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    import lightning.pytorch as pl


def to_uint8(images: Tensor) -> Tensor:
    """Convert images to uint8 in [0, 255]: float inputs are read as [-1, 1], uint8 passes through.

    Example:
        >>> to_uint8(torch.tensor([-1.0, 0.0, 1.0])).tolist()
        [0, 128, 255]
    """
    if images.dtype == torch.uint8:
        return images
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_float(images: Tensor) -> Tensor:
    """Convert uint8 images in [0, 255] to float32 in [-1, 1]; float inputs pass through unchanged."""
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile images (B, C, H, W) into one HxWxC uint8 array, ``nrow`` images per row (default: square)."""
    images = to_uint8(images.detach().cpu())
    b, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(b)))
    rows = math.ceil(b / nrow)
    grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), dtype=np.uint8)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def grid_to_pil(grid: np.ndarray) -> Image.Image:
    """Wrap an HxWxC uint8 grid as a PIL image (grayscale when C == 1)."""
    return Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Save a grid of images (float in [-1, 1] or uint8) as a PNG and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_to_pil(make_grid(images, nrow=nrow)).save(path)
    return path


def log_image_grid(trainer: "pl.Trainer", tag: str, images: Tensor, nrow: int | None = None) -> list[Path]:
    """Log a grid through every logger of ``trainer``; return the PNG files written.

    Loggers with an image API get the image through it (TensorBoard's ``add_image``, the
    ``log_image`` method of W&B / Neptune-style loggers, MLflow's ``log_image``). Every other logger
    (CSV, custom ones) and ``logger=False`` get a PNG under ``<log_dir>/samples/``, so a grid is never
    silently dropped and no particular logger is assumed. Only global rank 0 writes.
    """
    if not trainer.is_global_zero:
        return []
    grid = make_grid(images, nrow=nrow)
    step = getattr(trainer.lightning_module, "generator_step", trainer.global_step)
    name = tag.replace("/", "_")
    written: list[Path] = []
    for logger in trainer.loggers or [None]:
        experiment = getattr(logger, "experiment", None) if logger is not None else None
        if logger is not None and callable(getattr(logger, "log_image", None)):
            logger.log_image(key=tag, images=[grid_to_pil(grid)], step=step)
        elif experiment is not None and hasattr(experiment, "add_image"):
            experiment.add_image(tag, grid, step, dataformats="HWC")
        elif experiment is not None and hasattr(experiment, "log_image") and hasattr(logger, "run_id"):
            experiment.log_image(logger.run_id, grid, f"{name}_step{step:07d}.png")
        else:
            log_dir = (getattr(logger, "log_dir", None) if logger is not None else None) or trainer.default_root_dir
            path = Path(log_dir) / "samples" / f"{name}_epoch{trainer.current_epoch:03d}_step{step:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            grid_to_pil(grid).save(path)
            written.append(path)
    return written


def save_images(images: Tensor, out_dir: str | os.PathLike, start_index: int = 0, prefix: str = "") -> list[Path]:
    """Write each image as its own PNG named ``{prefix}{index:06d}.png``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(to_uint8(images.detach().cpu()).permute(0, 2, 3, 1).numpy()):
        path = out_dir / f"{prefix}{start_index + i:06d}.png"
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
        paths.append(path)
    return paths


def unpack_batch(batch: Tensor | Sequence) -> tuple[Tensor, Tensor | None]:
    """Split a batch into ``(images, labels)``; ``labels`` is None for unlabeled data.

    Accepts a tensor, an ``(images, labels)`` pair, or a longer sequence whose first two items are
    those (extra items, such as file paths, are ignored).
    """
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, dict):
        return batch["images"], batch.get("labels")
    if isinstance(batch, (list, tuple)) and batch:
        images = batch[0]
        labels = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
        return images, labels
    raise TypeError(f"Expected a batch of images, (images, labels) or a dict with 'images'; got {type(batch).__name__}.")
