"""Writing images with ``trainer.predict`` and ``lightning-gen predict``.

``GANModule.predict_step`` and ``VAE.predict_step`` turn a batch of integer seeds (or of latents) into
images. :class:`SeedDataModule` feeds seeds ``start .. start + n - 1`` and :class:`ImageWriter` saves
each predicted image as ``<out_dir>/<seed>.png``, so image ``s`` is the same as ``model.sample(1, seed=s)``
whatever the batch size, device or number of processes (each DDP rank writes its own seeds).

For a class-conditional model, ``SeedDataModule(labels="0-9", per_class=N)`` pairs each seed with a label (the
first ``N`` seeds label 0, and so on) and the writer puts each image in a class subfolder,
``<out_dir>/<class>/<seed>.png``, that :class:`~lightning_gen.data.ImageFolderDataModule` reads back with the same
labels (folder names as :func:`~lightning_gen.sampling.class_folder_names` gives them).

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

    # class-conditional: 100 images of each digit in synthetic/0 ... synthetic/9
    lightning-gen predict --config zoo/dcgan-digits32/recipe.yaml --ckpt_path last.ckpt \\
        --data SeedDataModule --data.labels 0-9 --data.per_class 100 \\
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
    """Integer seeds ``start, ..., start + n - 1`` in batches, for ``trainer.predict``; with labels for a
    class-conditional model.

    Args:
        n: number of images to predict (with ``labels``: default ``per_class`` times the number of labels).
        start: the first seed.
        batch_size: seeds per batch (images generated per forward pass).
        labels: classes to draw, e.g. ``"0-9"``, ``"0,3,7"``, ``"all"`` or a list of ints; seeds are then paired
            with labels, ``per_class`` consecutive seeds per label, and batches are ``(seeds, labels)``.
        per_class: images per label (default ``n`` divided by the number of labels, else 8).
        truncation: ``psi`` in (0, 1] for every image (see ``sample(..., truncation=psi)``); None: none.

    Example:
        >>> dm = SeedDataModule(labels="0-2", per_class=2)
        >>> dm.hparams.n, dm.labels_of_seeds().tolist()
        (6, [0, 0, 1, 1, 2, 2])
    """

    def __init__(
        self,
        n: int | None = None,
        start: int = 0,
        batch_size: int = 256,
        labels: str | list[int] | None = None,
        per_class: int | None = None,
        truncation: float | None = None,
    ):
        super().__init__()
        if labels is None and per_class is not None:
            raise ValueError(f"per_class={per_class} needs labels (e.g. labels='0-9').")
        self._labels = None if labels is None else self._parse(labels)
        if self._labels is not None:
            if per_class is None:
                if n is not None and n % len(self._labels):
                    raise ValueError(f"n={n} does not split into {len(self._labels)} labels; pass per_class or a multiple.")
                per_class = 8 if n is None else n // len(self._labels)
            if n is not None and n != per_class * len(self._labels):
                raise ValueError(f"n={n} contradicts per_class={per_class} x {len(self._labels)} labels; give one of them.")
            n = per_class * len(self._labels)
        n = 64 if n is None else n
        if n < 1 or batch_size < 1 or start < 0 or (per_class is not None and per_class < 1):
            raise ValueError(
                f"n, batch_size and per_class must be >= 1 and start >= 0, got n={n}, batch_size={batch_size}, "
                f"per_class={per_class}, start={start}."
            )
        check_truncation(truncation)
        self.save_hyperparameters()
        self.hparams.n, self.hparams.per_class = n, per_class

    @staticmethod
    def _parse(labels: str | list[int]) -> str | list[int]:
        if isinstance(labels, str):
            return labels
        return [int(label) for label in labels]

    def _label_list(self, num_classes: int) -> list[int]:
        from lightning_gen.sampling import parse_labels

        spec = self._labels if isinstance(self._labels, str) else ",".join(str(label) for label in self._labels)
        return parse_labels(spec, num_classes)

    def labels_of_seeds(self, num_classes: int | None = None) -> torch.Tensor:
        """The label of each seed (label-major: ``per_class`` seeds per label), checked against ``num_classes``
        (default: the model's, when attached to a trainer; else only parsed)."""
        if num_classes is None:
            module = self.trainer.lightning_module if self.trainer is not None else None
            num_classes = getattr(module, "num_classes", None) if module is not None else None
        if num_classes is None and self._labels == "all":
            raise ValueError("labels='all' needs the model's number of classes: attach the data module to a trainer.")
        labels = self._label_list(num_classes if num_classes is not None else 1 << 30)
        return torch.tensor(labels).repeat_interleave(self.hparams.per_class)

    def predict_dataloader(self) -> DataLoader:
        seeds = torch.arange(self.hparams.start, self.hparams.start + self.hparams.n)
        truncation = self.hparams.get("truncation")
        if truncation is not None:
            # Dicts that predict_step reads: seeds, the truncation and (conditional) the labels.
            dataset = seeds if self._labels is None else torch.utils.data.TensorDataset(seeds, self.labels_of_seeds())
            return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=False, collate_fn=_SeedsWithTruncation(truncation))
        if self._labels is None:
            return DataLoader(seeds, batch_size=self.hparams.batch_size, shuffle=False)
        dataset = torch.utils.data.TensorDataset(seeds, self.labels_of_seeds())
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=False)


class _SeedsWithTruncation:
    """Collate seeds (or (seed, label) pairs) into ``{"seeds": (B,), "labels": (B,), "truncation": psi}`` (a class,
    so worker processes can pickle it)."""

    def __init__(self, truncation: float):
        self.truncation = truncation

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        if isinstance(items[0], (tuple, list)):
            seeds, labels = zip(*items)
            return {"seeds": torch.stack(seeds), "labels": torch.stack(labels), "truncation": self.truncation}
        return {"seeds": torch.stack(items), "truncation": self.truncation}


class ImageWriter(BasePredictionWriter):
    """Save every predicted image as ``<out_dir>/<seed>.png`` (the batch's seeds; its index for latents), or
    ``<out_dir>/<class>/<seed>.png`` when batches carry labels (``SeedDataModule(labels=...)``).

    Args:
        out_dir: folder for the PNG files (created).
        class_names: folder name of each label; default the model's ``class_names`` attribute if it has one, else
            the label index (see :func:`~lightning_gen.sampling.class_folder_names`).
    """

    def __init__(self, out_dir: str | os.PathLike, class_names: list[str] | None = None):
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.class_names = class_names

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
        folders = [self.out_dir] * len(names)
        if isinstance(batch, (tuple, list)) and len(batch) > 1:
            from lightning_gen.sampling import class_folder_names

            num_classes = int(getattr(pl_module, "num_classes", 0) or 0)
            classes = class_folder_names(num_classes, self.class_names or getattr(pl_module, "class_names", None))
            folders = [self.out_dir / classes[int(label)] for label in torch.as_tensor(batch[1]).tolist()]
        for name, folder, image in zip(names, folders, prediction.cpu()):
            save_images(image[None], folder, start_index=name)
