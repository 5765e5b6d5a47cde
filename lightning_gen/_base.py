"""What ``GANModule`` and ``VAE`` share: manual optimization done right under mixed precision and DDP.

This is the only place that knows about Lightning's plumbing for alternating updates; the model files
(:mod:`lightning_gen.gan`, :mod:`lightning_gen.vae`) read as plain training steps on top of it:

* **Mixed precision.** Each half-step calls ``manual_backward`` then ``optimizer.step()`` on Lightning's
  optimizer wrapper, so under ``16-mixed`` the GradScaler unscales, checks for inf and skips *that*
  optimizer's step on its own, and under both ``16-mixed`` and ``bf16-mixed`` the forward runs in the
  autocast context the precision plugin opens. Nothing here opens autocast by hand.
* **Gradient clipping.** ``Trainer(gradient_clip_val=...)`` is rejected by Lightning for manual
  optimization, so clipping is a module argument applied in ``on_before_optimizer_step``, which the
  precision plugin calls after unscaling (clipping scaled gradients would clip at the wrong norm).
* **DDP.** During the discriminator half-step the generator's parameters get no gradient and vice
  versa. Plain DDP raises on the next step unless unused-parameter detection is on, so ``setup``
  turns it on for the strategy before Lightning wraps the model.
* **Non-finite losses** stop training with a message (or skip the step) *before* the optimizer
  step, and checkpoints refuse to save non-finite weights.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from lightning_gen._images import to_float, unpack_batch
from lightning_gen.zoo.hub import HubMixin

NONFINITE_POLICIES = ("raise", "skip")
CLIP_ALGORITHMS = ("norm", "value")


class GenerativeModule(HubMixin, pl.LightningModule):
    """Base class of the library's LightningModules. Not used directly; see ``GANModule`` and ``VAE``."""

    def __init__(self) -> None:
        super().__init__()
        # Alternating updates need two optimizers stepped by hand.
        self.automatic_optimization = False
        self.generator_step = 0  # generator (or VAE) updates done; restored from checkpoints
        self.skipped_steps = 0  # half-steps skipped because of a non-finite loss (on_nonfinite="skip")
        self._noise_seed: int | None = None
        self._noise_rng: torch.Generator | None = None
        self._batch_checked = False
        self._grid_logged_this_epoch = False

    # ----------------------------------------------------------------------------------------------
    # Properties every generative module exposes (metrics and the zoo rely on them).
    @property
    def image_size(self) -> int:
        return int(self.hparams.image_size)

    @property
    def channels(self) -> int:
        return int(self.hparams.channels)

    @property
    def latent_dim(self) -> int:
        return int(self.hparams.latent_dim)

    @property
    def num_classes(self) -> int:
        return int(self.hparams.get("num_classes", 0) or 0)

    def inference_networks(self) -> dict[str, torch.nn.Module]:  # pragma: no cover - abstract
        """The networks needed to sample (what a Hub export keeps)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------------
    # Validation shared by subclasses.
    @staticmethod
    def _check_choice(name: str, value: Any, allowed: tuple) -> None:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")

    def _check_common_args(self, on_nonfinite: str, gradient_clip_val: float | None, gradient_clip_algorithm: str) -> None:
        self._check_choice("on_nonfinite", on_nonfinite, NONFINITE_POLICIES)
        self._check_choice("gradient_clip_algorithm", gradient_clip_algorithm, CLIP_ALGORITHMS)
        if gradient_clip_val is not None and not gradient_clip_val > 0:
            raise ValueError(f"gradient_clip_val must be > 0 or None (no clipping), got {gradient_clip_val!r}.")

    # ----------------------------------------------------------------------------------------------
    # Lightning hooks.
    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy):
            ddp_kwargs = getattr(strategy, "_ddp_kwargs", None)
            if ddp_kwargs is None:  # a future Lightning renamed the attribute: fail before the first step
                raise RuntimeError(
                    f"{type(self).__name__} alternates updates, which leaves parameters without gradients in "
                    "each half-step. Use Trainer(strategy='ddp_find_unused_parameters_true') or "
                    "DDPStrategy(find_unused_parameters=True)."
                )
            if not ddp_kwargs.get("find_unused_parameters", False) and not ddp_kwargs.get("static_graph", False):
                ddp_kwargs["find_unused_parameters"] = True
                rank_zero_info(
                    f"{type(self).__name__}: enabled DDP find_unused_parameters=True, because each half-step of the "
                    "alternating updates leaves the other network's parameters without gradients."
                )

    def on_fit_start(self) -> None:
        if self._noise_seed is None:
            # Drawn from the global RNG so that seed_everything() makes runs repeatable.
            self._noise_seed = int(torch.randint(0, 2**31 - 1, (1,)).item())

    def on_train_epoch_start(self) -> None:
        # Reseeding per (epoch, rank) makes a run resumed at an epoch boundary draw the same noise as an
        # uninterrupted one, and gives each DDP rank its own noise.
        seed = (self._noise_seed * 1_000_003 + self.current_epoch * 7919 + self.global_rank) % (2**63 - 1)
        self._noise_rng = torch.Generator(device=self.device).manual_seed(seed)
        self._grid_logged_this_epoch = False

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip = self.hparams.get("gradient_clip_val")
        if clip:
            # Called by the precision plugin after GradScaler.unscale_, so the threshold is in true units.
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm=self.hparams.gradient_clip_algorithm)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log_sample_grids()
            self._grid_logged_this_epoch = True

    def on_train_epoch_end(self) -> None:
        if not self._grid_logged_this_epoch:  # no validation loop ran this epoch
            self.log_sample_grids()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for name, tensor in self.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise FloatingPointError(
                    f"Refusing to write a checkpoint: {name} holds non-finite values at generator step "
                    f"{self.generator_step}. Lower the learning rate or set gradient_clip_val."
                )
        from lightning_gen import __version__

        checkpoint["lightning_gen"] = {
            "class": type(self).__name__,
            "version": __version__,
            "generator_step": self.generator_step,
            "skipped_steps": self.skipped_steps,
            "noise_seed": self._noise_seed,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("lightning_gen", {})
        self.generator_step = int(meta.get("generator_step", 0))
        self.skipped_steps = int(meta.get("skipped_steps", 0))
        self._noise_seed = meta.get("noise_seed")

    # ----------------------------------------------------------------------------------------------
    # Helpers for training steps.
    def log_sample_grids(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare_batch(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        """Unpack a batch and, on the first step, check it matches the model."""
        images, labels = unpack_batch(batch)
        if not self._batch_checked:
            expected = (self.channels, self.image_size, self.image_size)
            if images.ndim != 4 or tuple(images.shape[1:]) != expected:
                raise ValueError(
                    f"{type(self).__name__} expects image batches of shape (B, {', '.join(map(str, expected))}) "
                    f"(channels={self.channels}, image_size={self.image_size}), but the batch has shape "
                    f"{tuple(images.shape)}. Make the model's image_size/channels match the data module's."
                )
            if self.num_classes:
                if labels is None:
                    raise ValueError(
                        f"{type(self).__name__}(num_classes={self.num_classes}) is class-conditional but the batch has "
                        "no labels. Use a labeled dataset (class subfolders) or set num_classes=0."
                    )
                if int(labels.max()) >= self.num_classes or int(labels.min()) < 0:
                    raise ValueError(
                        f"Batch labels range over [{int(labels.min())}, {int(labels.max())}] but num_classes="
                        f"{self.num_classes}. Set num_classes to the data module's num_classes."
                    )
            self._batch_checked = True
        # The data modules convert uint8 in on_after_batch_transfer; a bare loader passed to fit() (or a
        # custom one) may still deliver uint8, which is converted here on the device rather than rejected.
        return to_float(images), (labels if self.num_classes else None)

    def _noise_generator(self) -> torch.Generator:
        """The training noise RNG (seeded per epoch and rank in ``on_train_epoch_start``)."""
        if self._noise_rng is None:  # training_step called outside fit (e.g. a unit test)
            self._noise_rng = torch.Generator(device=self.device).manual_seed(0)
        return self._noise_rng

    def _noise(self, n: int) -> Tensor:
        return torch.randn(n, self.latent_dim, device=self.device, generator=self._noise_generator())

    def _latents_for_sampling(self, n: int, seed: int | None) -> Tensor:
        # Drawn on the CPU, so a seed gives the same images on every device.
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def _loss_is_finite(self, loss: Tensor, what: str) -> bool:
        """True when ``loss`` is finite on every rank; otherwise raise or skip as configured."""
        finite = self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss.detach()).all()), all=True)
        if finite:
            return True
        if self.hparams.on_nonfinite == "raise":
            raise FloatingPointError(
                f"The {what} loss became non-finite ({loss.detach().float().item()}) at generator step "
                f"{self.generator_step}. Training stopped before the optimizer step, so no non-finite weights "
                "were written. Lower the learning rate, set gradient_clip_val, or pass on_nonfinite='skip'."
            )
        self.skipped_steps += 1
        rank_zero_warn(f"Skipping a {what} step: the loss is non-finite (generator step {self.generator_step}).")
        return False

    def _optimizers(self) -> list:
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def _update(self, optimizer: Any, loss: Tensor, what: str) -> bool:
        """One half-step: check the loss, backward through the precision plugin, step. Returns whether it stepped."""
        if not self._loss_is_finite(loss, what):
            optimizer.zero_grad(set_to_none=True)
            return False
        # Zero before the backward only, as a hand-written loop does. Also freeing the gradients right after
        # the step (to drop them during the other network's half-step) cost ~6% throughput on CPU, from
        # reallocating the buffers every half-step (benchmarks/RESULTS.md). The idle network's stale gradients
        # are harmless: toggled_optimizer keeps new gradients from reaching it.
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        return True


def kl_warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over ``warmup_steps`` updates (1 when warm-up is off)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
