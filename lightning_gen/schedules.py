"""Hyper-parameters that ramp with the number of images seen, as R3GAN trains (Huang et al., 2024).

R3GAN moves its learning rate, gamma (the R1/R2 weight), Adam's beta2, the EMA half-life and the
augmentation probability from a start value to a final value along half a cosine over a number of
training images, then holds the final value. Every value is a plain function of the images seen
(:func:`cosine_ramp`), never of a step counter that a resume could reset, so a resumed run lands
on the same values as one that never stopped.

:class:`R3GANSchedule` is the Lightning callback that applies the ramps to a ``GANModule``-like
module before each training batch. It counts the images itself (real images per batch, all DDP
ranks together) and checkpoints that count.

:func:`ema_decay_from_half_life` turns an EMA half-life in images into a per-update decay, the
StyleGAN2/R3GAN definition: after ``half_life`` images the old average weighs one half.

Example:
    >>> lr = CosineRamp(start=2e-4, end=5e-5, images=20_000_000)
    >>> [f"{lr(n):.3g}" for n in (0, 10_000_000, 20_000_000, 30_000_000)]
    ['0.0002', '0.000125', '5e-05', '5e-05']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
from torch import nn

from lightning_gen._images import unpack_batch
from lightning_gen.augment import AdaptiveAugment

__all__ = ["R3GAN_SCHEDULES", "CosineRamp", "R3GANSchedule", "cosine_ramp", "ema_decay_from_half_life"]


def cosine_ramp(images_seen: float, start: float, end: float, images: float) -> float:
    """``start`` at 0 images, ``end`` at ``images`` and after, half a cosine in between.

    The value is ``end + (start - end) * (1 + cos(pi * t)) / 2`` with ``t = images_seen / images``, the
    shape of R3GAN's ``cosine_decay_with_warmup`` without warm-up; it moves slowly at both ends.
    ``images=0`` means "use ``end`` from the start".

    Example:
        >>> cosine_ramp(0, 1.0, 0.0, 100), cosine_ramp(50, 1.0, 0.0, 100), cosine_ramp(100, 1.0, 0.0, 100)
        (1.0, 0.5, 0.0)
        >>> round(cosine_ramp(25, 1.0, 0.0, 100), 6)   # (1 + cos(pi / 4)) / 2
        0.853553
    """
    if images_seen < 0:
        raise ValueError(f"images_seen must be >= 0, got {images_seen!r}.")
    if images < 0:
        raise ValueError(f"images (the length of the ramp) must be >= 0, got {images!r}.")
    if images_seen >= images:
        return float(end)
    weight_of_start = 0.5 * (1.0 + math.cos(math.pi * images_seen / images))
    return float(end + (start - end) * weight_of_start)


def ema_decay_from_half_life(half_life_images: float, batch_size: int) -> float:
    """The EMA decay per update of ``batch_size`` images for a half-life of ``half_life_images`` images.

    ``0.5 ** (batch_size / half_life_images)`` (StyleGAN2's ``ema_kimg`` and R3GAN's ``ema_nimg``):
    after ``half_life_images / batch_size`` updates an old value's weight has halved, whatever the
    batch size. A half-life of 0 gives decay 0: the average is a copy of the model (R3GAN starts there).

    Example:
        >>> ema_decay_from_half_life(10_000, 10_000), ema_decay_from_half_life(0, 64)
        (0.5, 0.0)
        >>> round(ema_decay_from_half_life(5_000_000, 512), 6)
        0.999929
    """
    if half_life_images < 0:
        raise ValueError(f"half_life_images must be >= 0 (0 = no averaging), got {half_life_images!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (images per EMA update), got {batch_size!r}.")
    if half_life_images == 0:
        return 0.0
    return 0.5 ** (batch_size / half_life_images)


@dataclass(frozen=True)
class CosineRamp:
    """A hyper-parameter's ramp: ``start`` at 0 images, ``end`` from ``images`` on (see :func:`cosine_ramp`)."""

    start: float
    end: float
    images: float  # length of the ramp, in training images (all ranks together)

    def __post_init__(self) -> None:
        if self.images < 0:
            raise ValueError(f"images (the length of the ramp) must be >= 0, got {self.images!r}.")

    def __call__(self, images_seen: float) -> float:
        return cosine_ramp(images_seen, self.start, self.end, self.images)


def _paper_preset(gamma: tuple[float, float], ema_half_life: float, augment_p: float, images: float) -> dict[str, CosineRamp]:
    return {
        "lr": CosineRamp(2e-4, 5e-5, images),
        "beta2": CosineRamp(0.9, 0.99, images),
        "gamma": CosineRamp(gamma[0], gamma[1], images),
        "ema_half_life": CosineRamp(0.0, ema_half_life, images),
        "augment_p": CosineRamp(0.0, augment_p, images),
    }


#: The ramps of R3GAN's presets (brownvc/R3GAN ``train.py``); Adam's beta1 is 0 there and lr is shared by G and D.
R3GAN_SCHEDULES: dict[str, dict[str, CosineRamp]] = {
    "cifar10": _paper_preset(gamma=(0.05, 0.005), ema_half_life=5e6, augment_p=0.55, images=2e7),
    "ffhq64": _paper_preset(gamma=(2.0, 0.2), ema_half_life=5e5, augment_p=0.3, images=2e7),
    "imagenet32": _paper_preset(gamma=(0.5, 0.05), ema_half_life=5e7, augment_p=0.5, images=2e8),
}


class R3GANSchedule(pl.Callback):
    """Apply cosine ramps of lr, Adam beta2, gamma, EMA half-life and augmentation probability before each batch.

    What each ramp sets on the LightningModule (a ramp left as ``None`` leaves its value alone):

    * ``lr``: ``param_groups[*]["lr"]`` of every optimizer (G and D share it in R3GAN);
    * ``beta2``: the second entry of ``param_groups[*]["betas"]`` of every optimizer (beta1 is kept);
    * ``gamma``: ``hparams.r1_weight`` and, when the module has one, ``hparams.r2_weight``;
    * ``ema_half_life`` (images): ``generator_ema.decay`` via :func:`ema_decay_from_half_life`, with the
      images per EMA update = batch size x world size x ``hparams.n_critic``;
    * ``augment_p``: the augmentation's probability buffer ``augment.p`` (not with ADA, which steers
      ``p`` itself).

    The images seen are counted here: after each batch, its size times the number of processes. The
    count is the callback's checkpoint state, so a resumed run continues the ramps exactly. Nothing
    here reads a device value. Don't combine ``lr`` with the module's own LR schedulers.

    Args:
        lr, beta2, gamma, ema_half_life, augment_p: the ramps (:class:`CosineRamp`) or ``None``.
        preset: start from a named set of ramps in :data:`R3GAN_SCHEDULES`; explicit ramps override it.

    Example:
        >>> schedule = R3GANSchedule(lr=CosineRamp(1e-3, 1e-4, images=1000))
        >>> schedule.images_seen = 500
        >>> {k: round(v, 6) for k, v in schedule.values().items()}
        {'lr': 0.00055}
        >>> R3GANSchedule(preset="cifar10").values()["gamma"]
        0.05
    """

    def __init__(
        self,
        lr: CosineRamp | None = None,
        beta2: CosineRamp | None = None,
        gamma: CosineRamp | None = None,
        ema_half_life: CosineRamp | None = None,
        augment_p: CosineRamp | None = None,
        preset: str | None = None,
    ) -> None:
        if preset is not None and preset not in R3GAN_SCHEDULES:
            raise ValueError(f"preset must be one of {sorted(R3GAN_SCHEDULES)} or None, got {preset!r}.")
        ramps: dict[str, CosineRamp | None] = dict(R3GAN_SCHEDULES[preset]) if preset else {}
        explicit = {"lr": lr, "beta2": beta2, "gamma": gamma, "ema_half_life": ema_half_life, "augment_p": augment_p}
        ramps.update({name: ramp for name, ramp in explicit.items() if ramp is not None})
        self.ramps: dict[str, CosineRamp] = {name: ramp for name, ramp in ramps.items() if ramp is not None}
        if not self.ramps:
            raise ValueError("R3GANSchedule needs at least one ramp (lr, beta2, gamma, ema_half_life, augment_p) or a preset.")
        self.images_seen = 0  # real images of all ranks before the current batch

    def values(self, images_seen: int | None = None) -> dict[str, float]:
        """Every ramp's value after ``images_seen`` images (default: the images seen so far)."""
        seen = self.images_seen if images_seen is None else images_seen
        return {name: ramp(seen) for name, ramp in self.ramps.items()}

    # -- Lightning hooks ------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        augment = getattr(pl_module, "augment", None)
        if "augment_p" in self.ramps:
            if augment is None or not hasattr(augment, "p"):
                raise ValueError("R3GANSchedule(augment_p=...) needs a module with augmentation, e.g. GANModule(augment='diffaugment').")
            if isinstance(augment, AdaptiveAugment):
                raise ValueError("R3GANSchedule(augment_p=...) would fight ADA's own control of p; use augment='diffaugment' or drop augment_p.")
        if "ema_half_life" in self.ramps and getattr(pl_module, "generator_ema", None) is None:
            raise ValueError("R3GANSchedule(ema_half_life=...) needs a module with an EMA generator (e.g. GANModule(ema_decay=0.999)).")
        if "gamma" in self.ramps and "r1_weight" not in pl_module.hparams:
            raise ValueError(f"R3GANSchedule(gamma=...) sets hparams.r1_weight, which {type(pl_module).__name__} does not have.")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        images, _ = unpack_batch(batch)
        self.apply(pl_module, trainer.optimizers, images_per_batch=images.shape[0] * trainer.world_size)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        images, _ = unpack_batch(batch)
        self.images_seen += images.shape[0] * trainer.world_size  # shapes are host values: no device read

    def apply(self, module: nn.Module, optimizers: list, images_per_batch: int) -> dict[str, float]:
        """Set every ramped value on ``module`` and ``optimizers`` for the images seen so far; return them."""
        values = self.values()
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                if "lr" in values:
                    group["lr"] = values["lr"]
                if "beta2" in values:
                    group["betas"] = (group["betas"][0], values["beta2"])
        hparams = getattr(module, "hparams", {})
        if "gamma" in values:
            hparams["r1_weight"] = values["gamma"]
            if "r2_weight" in hparams:
                hparams["r2_weight"] = values["gamma"]
        if "ema_half_life" in values:
            images_per_update = images_per_batch * int(hparams.get("n_critic", 1))
            module.generator_ema.decay = ema_decay_from_half_life(values["ema_half_life"], images_per_update)
        if "augment_p" in values:
            module.augment.p.fill_(values["augment_p"])  # a device write, no read
        return values

    def state_dict(self) -> dict[str, Any]:
        return {"images_seen": self.images_seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.images_seen = int(state_dict["images_seen"])
