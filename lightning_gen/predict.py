"""Writing images with ``trainer.predict`` and ``lightning-gen predict``.

``GANModule.predict_step`` and ``VAE.predict_step`` turn a batch of integer seeds (or of latents) into
images. :class:`SeedDataModule` feeds seeds ``start .. start + n - 1`` and :class:`ImageWriter` saves
each predicted image as ``<out_dir>/<seed>.png``, so image ``s`` is the same as ``model.sample(1, seed=s)``
whatever the batch size, device or number of processes (each DDP rank writes its own seeds).

Example:
    >>> import lightning as L, tempfile, pathlib
    >>> from lightning_gen import GANModule
    >>> from lightning_gen.predict import ImageWriter, SeedDataModule
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[ImageWriter(out)])
    >>> _ = trainer.predict(GANModule(image_size=16, latent_dim=8, width=8), datamodule=SeedDataModule(n=3), return_predictions=False)
    >>> sorted(p.name for p in out.iterdir())
    ['000000.png', '000001.png', '000002.png']

From the command line (``--trainer.callbacks`` takes the writer like any callback)::

    lightning-gen predict --config zoo/dcgan-shapes32/recipe.yaml --ckpt_path last.ckpt \\
        --data SeedDataModule --data.n 1000 \\
        --trainer.callbacks+=lightning_gen.predict.ImageWriter --trainer.callbacks.out_dir synthetic/
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from lightning_gen._images import save_images
from lightning_gen.latents import check_truncation


class SeedDataModule(pl.LightningDataModule):
    """Integer seeds ``start, ..., start + n - 1`` in batches, for ``trainer.predict``.

    Args:
        n: number of images to predict.
        start: the first seed.
        batch_size: seeds per batch (images generated per forward pass).
        truncation: ``psi`` in (0, 1] for every image (see ``sample(..., truncation=psi)``); None: none.
    """

    def __init__(self, n: int = 64, start: int = 0, batch_size: int = 256, truncation: float | None = None):
        super().__init__()
        if n < 1 or batch_size < 1 or start < 0:
            raise ValueError(f"n and batch_size must be >= 1 and start >= 0, got n={n}, batch_size={batch_size}, start={start}.")
        check_truncation(truncation)
        self.save_hyperparameters()

    def predict_dataloader(self) -> DataLoader:
        seeds = torch.arange(self.hparams.start, self.hparams.start + self.hparams.n)
        truncation = self.hparams.get("truncation")
        # Without truncation the batches stay plain seed tensors, as before; with it, dicts predict_step reads.
        collate = None if truncation is None else _SeedsWithTruncation(truncation)
        return DataLoader(seeds, batch_size=self.hparams.batch_size, shuffle=False, collate_fn=collate)


class _SeedsWithTruncation:
    """Collate seeds into ``{"seeds": (B,), "truncation": psi}`` (a class, so worker processes can pickle it)."""

    def __init__(self, truncation: float):
        self.truncation = truncation

    def __call__(self, seeds: list[torch.Tensor]) -> dict[str, Any]:
        return {"seeds": torch.stack(seeds), "truncation": self.truncation}


class ImageWriter(BasePredictionWriter):
    """Save every predicted image as ``<out_dir>/<seed>.png`` (the batch's seeds; its index for latents).

    Args:
        out_dir: folder for the PNG files (created).
    """

    def __init__(self, out_dir: str | os.PathLike):
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if isinstance(batch, dict):
            inputs = batch["seeds"] if "seeds" in batch else batch["latents"]
        else:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not torch.as_tensor(inputs).is_floating_point():
            names = [int(s) for s in torch.as_tensor(inputs).flatten().tolist()]
        else:  # latents: number the images by their position in the dataset
            names = list(batch_indices) if batch_indices else list(range(batch_idx * len(prediction), (batch_idx + 1) * len(prediction)))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, image in zip(names, prediction.cpu()):
            save_images(image[None], self.out_dir, start_index=name)
