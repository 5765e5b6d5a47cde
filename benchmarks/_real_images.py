"""Held-out real images with labels for the benchmarks of issue 23 (truncation, projection): one place to add a source.

``--real shapes`` draws ``ShapesDataset`` images (labels: the shape kind) from a seed no training run uses;
``--real PATH`` reads a labelled image folder (class subfolders, sorted names -> labels 0..K-1; an unlabelled
folder gives labels -1), decoded as the data modules decode it. The digits data joins ``BUILTIN`` with one line
when it lands.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def _shapes(n: int, image_size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from lightning_gen.data.shapes import ShapesDataset

    # Seed 7: held out from ShapesDataModule's default seed 0 (the evaluator robustness benchmark's choice too).
    dataset = ShapesDataset(num_images=n, image_size=image_size, channels=channels, seed=7)
    return (*dataset.to_tensors(), dataset.class_names)


#: Built-in labelled sources by name: (n, image_size, channels) -> (uint8 images (N, C, H, W), labels (N,),
#: class names).
def _digits(n: int, image_size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from lightning_gen.data import DigitsDataset

    # The 1,000 held-out test digits: nothing in the project trains on them.
    dataset = DigitsDataset("test", image_size=image_size, channels=channels)
    images, labels = dataset.to_tensors()
    return images[:n], labels[:n], dataset.class_names


BUILTIN: dict[str, Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor, list[str]]]] = {
    "shapes": _shapes,
    "digits": _digits,
}


def real_images(
    source: str, n: int, image_size: int, channels: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` real images (uint8), labels and class names from a built-in source or a folder (a seeded subset)."""
    if source in BUILTIN:
        return BUILTIN[source](n, image_size, channels)
    from lightning_gen.data import decode_image, scan_image_folder

    root = Path(source)
    if not root.is_dir():
        raise SystemExit(f"--real must be one of {sorted(BUILTIN)} or an image folder; {source!r} is neither.")
    index = scan_image_folder(root)
    records = random.Random(seed).sample(index.records, min(n, len(index.records)))
    images = np.stack([decode_image(root / r.relpath, image_size, channels) for r in records])
    return torch.from_numpy(images), torch.tensor([r.label for r in records]), list(index.class_names)
