"""Small builders shared by the training-core tests."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


def image_loader(n: int = 32, image_size: int = 16, channels: int = 3, batch_size: int = 8, num_classes: int = 0, seed: int = 0) -> DataLoader:
    """A loader of random float images in [-1, 1] (and labels when ``num_classes`` > 0), in a fixed order."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, channels, image_size, image_size, generator=g) * 2 - 1
    tensors = [images] + ([torch.randint(0, num_classes, (n,), generator=g)] if num_classes else [])
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=False)


def trainer(tmp_path, **kwargs) -> L.Trainer:
    """A quiet CPU trainer; keyword arguments override the defaults."""
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return L.Trainer(**options)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[name], p.detach()) for name, p in module.named_parameters())
