"""What both lightning-gen data modules share: uint8 batches, float on the device.

Loaders yield ``uint8`` images ``(B, C, H, W)`` in ``[0, 255]``: a quarter of the bytes
of float32 to collate, pin and copy. :meth:`ImageDataModuleBase.on_after_batch_transfer`
runs after the batch has reached the training device and turns the images into float
in ``[-1, 1]``, so a LightningModule's ``training_step`` never sees uint8. Code that
iterates ``datamodule.train_dataloader()`` itself (e.g. metric callbacks) gets uint8.

Not a general-purpose data module: no download hooks, no test split.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch import LightningDataModule

from lightning_gen._images import to_float
from lightning_gen.data._sampling import EpochShuffleSampler

__all__ = ["ImageDataModuleBase", "default_num_workers"]


def default_num_workers() -> int:
    """Loader worker processes to use by default: the usable CPU cores, at most 4.

    Four workers keep a GPU busy at the small image sizes this library targets; more
    mostly add memory and start-up time.
    """
    try:
        cores = len(os.sched_getaffinity(0))  # respects taskset/cgroup CPU pinning
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


class ImageDataModuleBase(LightningDataModule):
    """Base of the lightning-gen data modules (see the module docstring).

    Subclasses set ``image_size``, ``channels``, ``batch_size``, ``num_workers``, ``seed``
    and provide ``class_names`` and ``fingerprint(split)``.
    """

    image_size: int
    channels: int
    batch_size: int
    num_workers: int
    seed: int

    @property
    def class_names(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes; 0 when batches are unlabeled."""
        return len(self.class_names)

    def fingerprint(self, split: str = "train") -> str:
        raise NotImplementedError

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Convert uint8 images to float in ``[-1, 1]`` on the device; labels are kept."""
        if isinstance(batch, torch.Tensor):
            return to_float(batch)
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            return type(batch)([to_float(batch[0]), *batch[1:]])
        return batch

    def test_dataloader(self) -> Any:
        """The validation split: these data modules hold no separate test split, and ``lightning-gen test``
        on a checkpoint should still run rather than fail for want of a loader."""
        return self.val_dataloader()

    def _loader_options(self) -> dict[str, Any]:
        workers = self.num_workers
        return {
            "batch_size": self.batch_size,
            "num_workers": workers,
            # Workers that survive between epochs skip re-forking and re-importing.
            "persistent_workers": workers > 0,
            "pin_memory": torch.cuda.is_available(),
            # Without a generator every new loader iterator draws its worker base seed from the
            # global RNG, so the data path would shift the random stream of the training code.
            # Nothing in our workers uses that seed: every random choice is derived from
            # (seed, epoch, index) (see _sampling.py).
            "generator": torch.Generator().manual_seed(self.seed),
        }

    def _training_sampler(self, num_samples: int) -> EpochShuffleSampler:
        """The training sampler, already at the epoch the Trainer is about to run.

        Lightning (2.5.3 to at least 2.6) creates the training iterator in ``FitLoop.setup_data``
        before it calls ``set_epoch``, and a resumed run keeps that first iterator. With worker
        processes the iterator draws its first indices as soon as it is created, so a sampler
        that started at epoch 0 would replay epoch 0's order and flips in the first resumed epoch
        (Lightning-AI/pytorch-lightning#21938). Starting at the counter that Lightning later
        passes to ``set_epoch`` (``epoch_progress.current.processed``, restored from the
        checkpoint by then) makes that first iterator right.
        """
        sampler = EpochShuffleSampler(num_samples, seed=self.seed, with_epoch=True)
        fit_loop = getattr(self.trainer, "fit_loop", None)
        if fit_loop is not None:
            sampler.set_epoch(fit_loop.epoch_progress.current.processed)
        return sampler

    @staticmethod
    def _check_split(split: str) -> str:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
        return split


def check_positive_int(name: str, value: int) -> int:
    """Validate an integer argument that must be >= 1, naming it in the error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_fraction(name: str, value: float) -> float:
    """Validate a fraction in ``[0, 1)``, naming it in the error."""
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(
            f"{name} must be in [0, 1) (the share of images held out for validation), "
            f"got {value!r}."
        )
    return float(value)
