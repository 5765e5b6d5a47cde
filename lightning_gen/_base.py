"""What ``GANModule`` and ``VAE`` share: manual optimization done right under mixed precision and DDP.

This is the only place that knows about Lightning's plumbing for alternating updates; the model files
(:mod:`lightning_gen.gan`, :mod:`lightning_gen.vae`) read as plain training steps on top of it:

* **Mixed precision.** Each half-step calls ``manual_backward`` then ``optimizer.step()`` on Lightning's
  optimizer wrapper, so under ``16-mixed`` the one GradScaler unscales, checks for inf and skips *that*
  optimizer's step on its own gradients, then updates its scale (Lightning calls ``update()`` after every
  optimizer step, so the scale is shared: an overflow in either network halves it for both). Under both
  ``16-mixed`` and ``bf16-mixed`` the forward runs in the autocast context the precision plugin opens;
  nothing here opens autocast by hand. A step the GradScaler skipped is not counted (``generator_step``,
  the EMA and step-wise LR schedulers only advance on real updates), and the GradScaler decides every
  skip: a non-finite loss makes its gradients NaN (see :meth:`GenerativeModule._update`).
* **Gradient clipping.** ``Trainer(gradient_clip_val=...)`` is rejected by Lightning for manual
  optimization, so clipping is a module argument applied in ``on_before_optimizer_step``, which the
  precision plugin calls after unscaling (clipping scaled gradients would clip at the wrong norm).
* **DDP.** Each network is wrapped in its own ``DistributedDataParallel`` by
  :class:`~lightning_gen.strategies.MultiModelDDPStrategy` (``ddp_networks`` names them), so a half-step
  all-reduces only the network that steps. The half-step calls that network through
  :meth:`GenerativeModule._network` and the idle one directly.
* **No host synchronisation in steady state.** A non-finite loss sets a flag on the device, which is
  read only on logging steps, at the end of an epoch and before a checkpoint is written (``raise``
  stops there naming the generator-step range; ``skip`` warns there with the skips of the range, by
  kind, and without a GradScaler undoes the update on the device). Metrics are
  logged on logging steps only, because Lightning converts every progress-bar value to a Python
  number after every batch.
* **LR schedulers** are stepped here (Lightning leaves them alone under manual optimization):
  ``interval="step"`` once per generator update, ``interval="epoch"`` at the end of each epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lightning_gen import _compat
from lightning_gen._images import to_float, unpack_batch
from lightning_gen.hub import HubMixin
from lightning_gen.latents import check_truncation, sample_mapped, truncated_normal, truncation_threshold
from lightning_gen.strategies import adapt_strategy

NONFINITE_POLICIES = ("raise", "skip")
CLIP_ALGORITHMS = ("norm", "value")
LR_SCHEDULER_INTERVALS = ("step", "epoch")
PROGRESS_BAR_NAME = "loss"  # the one value on the progress bar: D's loss for the GAN, the VAE's loss


class GenerativeModule(HubMixin, pl.LightningModule):
    """Base class of the library's LightningModules. Not used directly; see ``GANModule`` and ``VAE``."""

    def __init__(self) -> None:
        super().__init__()
        # Alternating updates need two optimizers stepped by hand.
        self.automatic_optimization = False
        self.generator_step = 0  # generator (or VAE) updates done; restored from checkpoints
        self.skipped_steps = 0  # half-steps skipped (non-finite loss under on_nonfinite="skip", GradScaler overflow)
        self._noise_seed: int | None = None
        self._noise_rng: torch.Generator | None = None
        self._batch_checked = False
        self._grid_logged_this_epoch = False
        self._networks_configured = False
        # Filled by MultiModelDDPStrategy: one DistributedDataParallel per network. A plain dict, so the
        # wrappers are not registered submodules and state-dict keys never change.
        self._ddp_wrappers: dict[str, nn.Module] = {}
        # Read together, once, on logging steps (see _check_nonfinite):
        self._nonfinite: Tensor | None = None  # device flag: a non-finite loss since the last look
        # Device counts of skipped updates since the last look: [with a non-finite loss, with a finite loss
        # but non-finite gradients (a GradScaler overflow under 16-mixed)].
        self._skip_counts: Tensor | None = None
        self._last_checked_step = 0  # generator step at the last look

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

    def inference_networks(self) -> dict[str, nn.Module]:  # pragma: no cover - abstract
        """The networks needed to sample (what a Hub export keeps)."""
        raise NotImplementedError

    def ddp_networks(self) -> dict[str, nn.Module]:  # pragma: no cover - abstract
        """The trained networks, by attribute name; each gets its own DDP wrapper under multi-GPU training."""
        raise NotImplementedError

    def _network(self, name: str) -> nn.Module:
        """Network ``name`` as the half-step that trains it must call it: through its DDP wrapper, if any."""
        wrapper = self._ddp_wrappers.get(name)
        return wrapper if wrapper is not None else getattr(self, name)

    # ----------------------------------------------------------------------------------------------
    # Validation shared by subclasses.
    @staticmethod
    def _check_choice(name: str, value: Any, allowed: tuple) -> None:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")

    def _check_common_args(
        self, on_nonfinite: str, gradient_clip_val: float | None, gradient_clip_algorithm: str, lr_scheduler_interval: str = "epoch"
    ) -> None:
        self._check_choice("on_nonfinite", on_nonfinite, NONFINITE_POLICIES)
        self._check_choice("gradient_clip_algorithm", gradient_clip_algorithm, CLIP_ALGORITHMS)
        self._check_choice("lr_scheduler_interval", lr_scheduler_interval, LR_SCHEDULER_INTERVALS)
        if gradient_clip_val is not None and not gradient_clip_val > 0:
            raise ValueError(f"gradient_clip_val must be > 0 or None (no clipping), got {gradient_clip_val!r}.")

    # ----------------------------------------------------------------------------------------------
    # Lightning hooks.
    def setup(self, stage: str) -> None:
        # Lightning runs this hook before the strategy wraps the model, so a plain DDPStrategy can still
        # become a MultiModelDDPStrategy (one DDP wrapper per network); other parallel strategies fail here,
        # before the first step.
        adapt_strategy(self.trainer.strategy, type(self).__name__, stage)

    def configure_callbacks(self) -> list:
        # Lightning calls this before its own configuration checks, whose message for gradient accumulation
        # suggests automatic optimization, which two alternating optimizers cannot use.
        accumulate = getattr(self._trainer, "accumulate_grad_batches", 1) if self._trainer is not None else 1
        if accumulate != 1:
            raise ValueError(
                f"{type(self).__name__} steps two optimizers by hand, so Trainer(accumulate_grad_batches={accumulate}) "
                "can't apply. Use a larger batch_size in the data module instead (scale the learning rates if you "
                "want to keep the same per-image step)."
            )
        return []

    def _double_backward_penalties(self) -> list[str]:
        """The active loss terms whose backward differentiates an input gradient (``name=weight`` each)."""
        return []

    def _refuse_compiled_double_backward(self, penalties: list[str], discriminator: nn.Module | None) -> None:
        """Refuse compiling a network whose input gradient a penalty differentiates again (double backward).

        Decided from torch 2.14 (``tests/test_gan_options.py`` keeps checking it): AOTAutograd, behind
        every ``torch.compile`` backend but the debugging ``"eager"`` one, raises "torch.compile with
        aot_autograd does not currently support double backward" at the penalty's first backward (older
        releases were reported to return a gradient detached from the weights, so the penalty did nothing).
        Refused here, before any step, naming what works instead. Subclasses list their penalties in
        :meth:`_double_backward_penalties`.
        """
        if not penalties:
            return
        compile_option = self.hparams.get("compile")
        compiled_by_hand = discriminator is not None and _compat.compiled_in_place(discriminator)
        if not compile_option and not compiled_by_hand:
            return
        what = f"compile={compile_option!r}" if compile_option else "A discriminator compiled with nn.Module.compile()"
        raise ValueError(
            f"{what} can't be combined with {', '.join(penalties)}: the penalty differentiates the discriminator's "
            f"input gradient again (double backward), which torch {torch.__version__} cannot do through a compiled "
            "network. Train with compile=False and an uncompiled discriminator, compiling the generator alone if you "
            "like (model.generator.compile() before fit), or drop the penalty."
        )

    def configure_model(self) -> None:
        """Apply ``channels_last`` and ``compile`` to the networks (once, before DDP wraps them)."""
        if self._networks_configured:
            return
        self._networks_configured = True
        self._refuse_compiled_double_backward(self._double_backward_penalties(), getattr(self, "discriminator", None))
        compile_option = self.hparams.get("compile")
        for network in self.ddp_networks().values():
            if self.hparams.get("channels_last"):
                network.to(memory_format=torch.channels_last)
            if compile_option:
                # nn.Module.compile() compiles in place: parameter names (and so checkpoints, the EMA copy
                # and Hub exports) stay those of the plain network, unlike torch.compile(m)'s `_orig_mod.`.
                network.compile(**(compile_option if isinstance(compile_option, dict) else {}))
        for network in self.inference_networks().values():
            if self.hparams.get("channels_last"):
                network.to(memory_format=torch.channels_last)

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

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
        # Lightning turns every progress-bar value it holds into a Python number after every batch, which
        # waits for the device. The bar value is logged on logging steps only (see _log_progress_bar) and
        # dropped from Lightning's results afterwards, so other batches never read it. The bar keeps
        # showing the last value. (Private Lightning state: if it changes, this degrades to one sync per step.)
        results = _compat.logged_results(self._trainer)
        bar_value = results.get(f"training_step.{PROGRESS_BAR_NAME}") if results is not None else None
        if bar_value is not None and hasattr(bar_value, "has_reset") and not bar_value.has_reset:
            bar_value.reset()

    def _log_progress_bar(self, value: Tensor) -> None:
        """Show ``value`` (the module's one progress-bar number) on logging steps."""
        if self._is_logging_step():
            self.log(PROGRESS_BAR_NAME, value, prog_bar=True, logger=False)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._is_logging_step():
            self._check_nonfinite()

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
        self._check_nonfinite()
        self._step_lr_schedulers("epoch")
        if not self._grid_logged_this_epoch:  # no validation loop ran this epoch
            self.log_sample_grids()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_nonfinite()
        for name, tensor in self.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise FloatingPointError(
                    f"Refusing to write a checkpoint: {name} holds non-finite values at generator step "
                    f"{self.generator_step}. Lower the learning rate or set gradient_clip_val."
                )
        from lightning_gen._version import __version__

        checkpoint["lightning_gen"] = {
            "class": type(self).__name__,
            "version": __version__,
            "generator_step": self.generator_step,
            "skipped_steps": self.skipped_steps,
            "noise_seed": self._noise_seed,
            **self._extra_counters(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("lightning_gen", {})
        self.generator_step = int(meta.get("generator_step", 0))
        self._last_checked_step = self.generator_step
        self.skipped_steps = int(meta.get("skipped_steps", 0))
        self._noise_seed = meta.get("noise_seed")
        self._restore_extra_counters(meta)

    def _extra_counters(self) -> dict[str, int]:
        """Subclass counters to keep in the checkpoint's ``lightning_gen`` record."""
        return {}

    def _restore_extra_counters(self, meta: dict[str, Any]) -> None:
        pass

    # ----------------------------------------------------------------------------------------------
    # Optimizers and schedulers.
    def _optimizer(self, factory: Any, params: Any, lr: float, betas: Any) -> torch.optim.Optimizer:
        """``factory(params)`` when the user gave an optimizer factory, else the default Adam."""
        return factory(params) if factory else self._default_adam(params, lr, betas)

    def _default_adam(self, params: Any, lr: float, betas: Any) -> torch.optim.Adam:
        """Adam with the fastest implementation the device has: ``fused`` where torch has a kernel, else ``foreach``."""
        # float(): torch refuses betas mixing int and float, and ``(0, 0.99)`` is how people write them.
        betas = tuple(float(beta) for beta in betas)
        return torch.optim.Adam(params, lr=float(lr), betas=betas, **self._adam_implementation())

    def _adam_implementation(self) -> dict[str, bool]:
        fused_devices = _compat.fused_adam_devices()
        precision = str(getattr(self._trainer, "precision", "") or "") if self._trainer is not None else ""
        # A fused optimizer unscales inside step(), so Lightning cannot clip its gradients under 16-mixed.
        clipping_under_fp16 = self.hparams.get("gradient_clip_val") and precision.startswith("16")
        if self.device.type in fused_devices and not clipping_under_fp16:
            return {"fused": True}
        return {"foreach": True}

    @staticmethod
    def _optimizers_and_schedulers(
        optimizers: list[torch.optim.Optimizer], factories: list[Any], interval: str
    ) -> Any:
        """``configure_optimizers``'s return value: the optimizers, plus scheduler configs where a factory is set."""
        schedulers = [
            {"scheduler": factory(optimizer), "interval": interval}
            for optimizer, factory in zip(optimizers, factories)
            if factory is not None
        ]
        return (optimizers, schedulers) if schedulers else optimizers

    def _step_lr_schedulers(self, interval: str) -> None:
        """Step the schedulers whose ``interval`` is ``interval`` (Lightning doesn't under manual optimization).

        ``"step"`` counts generator updates, for the discriminator's scheduler too, so one schedule length
        fits both; ``frequency`` is honoured; ``ReduceLROnPlateau`` reads its ``monitor`` from the logged metrics.
        """
        if self._trainer is None:
            return
        count = self.generator_step if interval == "step" else self.current_epoch + 1
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != interval or count % config.frequency:
                continue
            if config.reduce_on_plateau:
                metric = self.trainer.callback_metrics.get(config.monitor)
                if metric is None:
                    if config.strict:
                        raise RuntimeError(
                            f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged; logged metrics: "
                            f"{sorted(self.trainer.callback_metrics)}. Set monitor= to one of them or strict=False."
                        )
                    continue
                config.scheduler.step(metric)
            else:
                config.scheduler.step()

    # ----------------------------------------------------------------------------------------------
    # Helpers for training steps.
    def log_sample_grids(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _augmented(self, images: Tensor) -> Tensor:
        """What the discriminator sees of ``images``: the differentiable augmentation's output, if any.

        Drawn from the training noise RNG (seeded per epoch and rank), so a resumed run augments identically.
        """
        augment = getattr(self, "augment", None)
        return images if augment is None else augment(images, self._noise_generator())

    def __getstate__(self) -> dict[str, Any]:
        # A copy made during fit (a deepcopy in a callback, say) must not carry the live DDP wrappers.
        state = dict(super().__getstate__())
        state["_ddp_wrappers"] = {}
        return state

    def _logs_this_batch(self) -> bool:
        """Whether the training step logs its metrics: on logging steps and on the last batch of an epoch.

        Logging every batch costs ~8% of a small network's step in Lightning's bookkeeping; the last batch
        keeps epoch-end callbacks (``ModelCheckpoint(monitor="train/...")``) supplied.
        """
        if self._is_logging_step():
            return True
        batches = self.trainer.num_training_batches if self._trainer is not None else float("inf")
        loop = self.trainer.fit_loop.epoch_loop if self._trainer is not None else None
        return loop is not None and batches != float("inf") and loop.batch_idx + 1 >= batches

    def _is_logging_step(self) -> bool:
        """Whether Lightning writes logs after this batch (the only batches that may read numbers back)."""
        if self._trainer is None:
            return True
        return _compat.should_update_logs(self._trainer)

    def _prepare_batch(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        """Unpack a batch and, on the first step, check it matches the model."""
        images, labels = unpack_batch(batch)
        if not self._batch_checked:
            self._check_first_batch(images, labels)
            self._batch_checked = True
        # The data modules convert uint8 in on_after_batch_transfer; a bare loader passed to fit() (or a
        # custom one) may still deliver uint8, which is converted here on the device rather than rejected.
        images = to_float(images)
        if self.hparams.get("channels_last"):
            images = images.contiguous(memory_format=torch.channels_last)
        return images, (labels if self.num_classes else None)

    def _check_first_batch(self, images: Tensor, labels: Tensor | None) -> None:
        expected = (self.channels, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__} expects image batches of shape (B, {', '.join(map(str, expected))}) "
                f"(channels={self.channels}, image_size={self.image_size}), but the batch has shape "
                f"{tuple(images.shape)}. Make the model's image_size/channels match the data module's."
            )
        if images.is_floating_point():
            low, high = float(images.min()), float(images.max())  # once per fit, not per step
            if low >= 0:
                raise ValueError(
                    f"{type(self).__name__} expects float images in [-1, 1] (the generator ends in tanh), but the "
                    f"first batch lies in [{low:.3g}, {high:.3g}], which looks like [0, 1] images (torchvision's "
                    "ToTensor()). Add transforms.Normalize(mean=0.5, std=0.5) after ToTensor(), yield uint8 images "
                    "(converted for you), or use the library's data modules."
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

    def _noise_generator(self) -> torch.Generator:
        """The training noise RNG (seeded per epoch and rank in ``on_train_epoch_start``)."""
        if self._noise_rng is None:  # training_step called outside fit (e.g. a unit test)
            self._noise_rng = torch.Generator(device=self.device).manual_seed(0)
        return self._noise_rng

    def _noise(self, n: int) -> Tensor:
        return torch.randn(n, self.latent_dim, device=self.device, generator=self._noise_generator())

    def _latents_for_sampling(self, n: int, seed: int | None, threshold: float = math.inf) -> Tensor:
        # Drawn on the CPU, so a seed gives the same images on every device. A finite threshold redraws the
        # components beyond it from the same generator (BigGAN's truncation; see lightning_gen.latents).
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return truncated_normal((n, self.latent_dim), threshold, generator)

    def _optimizers(self) -> list:
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def _grad_scaler(self) -> Any:
        """The precision plugin's GradScaler (``16-mixed``), or None."""
        if self._trainer is None:
            return None
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return scaler if scaler is not None and getattr(scaler, "is_enabled", lambda: True)() else None

    def _count_skip(self, skipped_with_nonfinite_loss: Tensor, skipped_with_finite_loss: Tensor) -> None:
        counts = torch.stack([skipped_with_nonfinite_loss, skipped_with_finite_loss]).long()
        self._skip_counts = counts if self._skip_counts is None else self._skip_counts + counts

    def _update(self, optimizer: Any, loss: Tensor, what: str) -> bool:
        """One half-step: backward through the precision plugin, then step.

        Returns False only when the step is known to have been skipped without a synchronisation of our
        own: under ``16-mixed``, when the GradScaler found an overflow (its own check has already waited
        for the device, so reading its verdict costs nothing more). Everything else stays on the device
        until :meth:`_check_nonfinite` reads it on a logging step.

        Under a GradScaler the scaler decides every skip, for both ``on_nonfinite`` policies: a non-finite
        loss turns all of this backward's gradients into NaN (a loss can be inf while its gradients are
        finite: an inf logit under softplus has slope 1), so the scaler skips that step, lowers its scale
        like for any overflow, and the step is not counted. Without a scaler, ``"skip"`` undoes the update
        on the device (:meth:`_step_unless`).
        """
        nonfinite = ~torch.isfinite(loss.detach())
        self._nonfinite = nonfinite if self._nonfinite is None else self._nonfinite | nonfinite
        # Zero before the backward only, as a hand-written loop does. Also freeing the gradients right after
        # the step (to drop them during the other network's half-step) cost ~6% throughput on CPU, from
        # reallocating the buffers every half-step (benchmarks/RESULTS.md). The idle network's stale gradients
        # are harmless: toggled_optimizer keeps new gradients from reaching it.
        optimizer.zero_grad(set_to_none=True)
        scaler = self._grad_scaler()
        if scaler is None:
            self.manual_backward(loss)
            if self.hparams.on_nonfinite == "skip":
                self._step_unless(optimizer, nonfinite)
            else:
                optimizer.step()
            return True
        # NaN * gradient is NaN even where the gradient is 0, and DDP's all-reduce carries it to every rank,
        # so all ranks' scalers skip together.
        self.manual_backward(loss * torch.where(nonfinite, float("nan"), 1.0))
        scale_before = _compat.grad_scale(scaler).clone()  # set by scaler.scale() inside manual_backward
        optimizer.step()  # unscale_, check, step or skip, update(): Lightning's MixedPrecision.optimizer_step
        # The GradScaler lowers its scale exactly when it skipped the step.
        skipped = bool(_compat.grad_scale(scaler) < scale_before)
        if skipped:
            self.skipped_steps += 1
            self._count_skip(nonfinite, ~nonfinite)
        return not skipped

    def _step_unless(self, optimizer: Any, skip: Tensor) -> None:
        """Step, then undo the update on the device where ``skip`` is set: no number is read back.

        For training without a GradScaler. Costs one copy of the parameters and optimizer state per
        half-step (on_nonfinite="skip" only). Optimizer state on another device than the parameters (Adam's
        CPU step counters) is not restored. The host does not know about the skip, so ``generator_step``,
        the EMA and step-wise schedulers count it as an update (of unchanged weights).
        """
        inner = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer wraps the torch optimizer
        params = [p for group in inner.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        loss_flag = skip.reshape(())
        # Under DDP a rank whose loss was finite still receives the all-reduced NaN gradients of another
        # rank: look at the gradients too, so every rank makes the same decision without talking.
        found_inf = torch.zeros(1, device=params[0].grad.device)
        _compat.non_finite_check_and_unscale_([p.grad for p in params], found_inf, torch.ones_like(found_inf))
        skip = (loss_flag | (found_inf > 0)).reshape(())
        for p in params:  # keep NaN/inf gradients out of the optimizer state
            p.grad.masked_fill_(skip, 0)
        state = [t for p in params for t in inner.state.get(p, {}).values() if isinstance(t, Tensor) and t.device == skip.device]
        tensors = [*params, *state]
        saved = [t.detach().clone() for t in tensors]
        optimizer.step()
        with torch.no_grad():
            for tensor, old in zip(tensors, saved):
                tensor.copy_(torch.where(skip, old, tensor))
        self._count_skip(skip & loss_flag, skip & ~loss_flag)

    def _check_nonfinite(self) -> None:
        """Read the device counters (logging steps, epoch end, before a checkpoint) and apply ``on_nonfinite``.

        ``"raise"`` stops on a non-finite loss on any rank. ``"skip"`` warns once per look about the updates
        skipped since the last one, by kind (non-finite loss, or non-finite gradients with a finite loss:
        under ``16-mixed`` the GradScaler's overflows), with the generator-step range they fall in.
        """
        if self._nonfinite is None:
            return
        first, last = self._last_checked_step, self.generator_step
        self._last_checked_step = self.generator_step
        counts = self._skip_counts if self._skip_counts is not None else self._nonfinite.new_zeros(2, dtype=torch.long)
        found, loss_skips, gradient_skips = torch.cat([self._nonfinite.reshape(1).long(), counts]).tolist()  # one read
        self._nonfinite.zero_()
        if self._skip_counts is not None:
            self._skip_counts.zero_()
        found = found > 0
        if self._trainer is not None:
            found = self.trainer.strategy.reduce_boolean_decision(found, all=False)  # any rank
        if found and self.hparams.on_nonfinite == "raise":
            raise FloatingPointError(
                f"A loss became non-finite between generator steps {first} and {last}. Training stopped, and no "
                "checkpoint with non-finite weights was written. Lower the learning rate, set gradient_clip_val, "
                "or pass on_nonfinite='skip'."
            )
        scaler = self._grad_scaler()
        if scaler is None:  # GradScaler skips were counted on the host as they happened; these only on the device
            self.skipped_steps += loss_skips + gradient_skips
        if self.hparams.on_nonfinite != "skip" or not loss_skips + gradient_skips:
            return
        cause = f" (GradScaler overflow; loss scale now {scaler.get_scale():g})" if scaler is not None else ""
        rank_zero_warn(
            f"Skipped {loss_skips + gradient_skips} update(s) between generator steps {first} and {last}: "
            f"{loss_skips} with a non-finite loss, {gradient_skips} with non-finite gradients{cause}."
        )

    # ----------------------------------------------------------------------------------------------
    # Sampling and prediction.
    def _sample_batch(self, z: Tensor, labels: Tensor | None) -> Tensor:  # pragma: no cover - abstract
        """Images in [-1, 1] for a batch of latents (on the module's device), in eval mode, without grad."""
        raise NotImplementedError

    def _default_labels(self, n: int, labels: Tensor | None) -> Tensor | None:
        if not self.num_classes:
            if labels is not None:
                raise ValueError(f"{type(self).__name__} is unconditional (num_classes=0); labels must be None.")
            return None
        labels = torch.arange(n) % self.num_classes if labels is None else torch.as_tensor(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}.")
        return labels

    def _mapping_network(self) -> nn.Module | None:
        """The sampling generator when it has a mapping network (truncated in w, see ``latents.MappingNetwork``)."""
        return None

    def _truncated_batch(self, z: Tensor, labels: Tensor | None, psi: float | None) -> Tensor:
        """``_sample_batch`` with StyleGAN's truncation in w where the generator has a mapping network.

        Gaussian truncation happened when ``z`` was drawn; ``psi = 1`` (or None) is plain ``_sample_batch``.
        """
        mapping = self._mapping_network() if psi is not None and psi < 1.0 else None
        if mapping is None:
            return self._sample_batch(z, labels)
        with eval_mode(mapping), torch.no_grad():
            return sample_mapped(mapping, z, labels, psi)

    def _truncation_threshold(self, psi: float | None) -> float:
        """Where the Gaussian latents are cut for ``psi``: nowhere without truncation or with a mapping network."""
        return math.inf if psi is None or self._mapping_network() is not None else truncation_threshold(psi)

    @torch.no_grad()
    def iter_samples(
        self,
        n: int,
        seed: int | None = None,
        labels: Tensor | None = None,
        batch_size: int = 256,
        truncation: float | None = None,
    ) -> Iterator[Tensor]:
        """Yield ``n`` images in [-1, 1] in chunks of ``batch_size``, on the module's device.

        Memory on the device is bounded by ``batch_size`` whatever ``n`` is; the chunks concatenate to
        ``sample(n, seed, labels, truncation=truncation)``.
        """
        from lightning_gen.networks._layout import validate_positive

        validate_positive("n", n)
        validate_positive("batch_size", batch_size)
        psi = check_truncation(truncation)
        z = self._latents_for_sampling(n, seed, self._truncation_threshold(psi))  # n x latent_dim floats on the CPU
        labels = self._default_labels(n, labels)
        for start in range(0, n, batch_size):
            chunk_labels = None if labels is None else labels[start : start + batch_size].to(self.device)
            chunk = self._truncated_batch(z[start : start + batch_size].to(self.device), chunk_labels, psi)
            yield chunk.float().clamp(-1, 1)

    def sample(
        self,
        n: int,
        seed: int | None = None,
        labels: Tensor | None = None,
        batch_size: int = 256,
        truncation: float | None = None,
    ) -> Tensor:
        """Generate ``n`` images in [-1, 1], shape (n, C, H, W), gathered on the CPU.

        Args:
            n: number of images.
            seed: makes the result repeatable, on any device (noise is drawn on the CPU).
            labels: class labels (n,) for a conditional model; default cycles through the classes.
            batch_size: images generated per forward pass; device memory is bounded by it, and each
                chunk moves to the CPU as soon as it is made (use :meth:`iter_samples` to stream).
            truncation: ``psi`` in (0, 1] trades diversity for fidelity (None or 1: plain sampling, bit for
                bit). Gaussian latents are redrawn beyond the threshold that keeps the share ``psi`` of
                N(0, 1) (BigGAN); generators with a mapping network use ``w_avg + psi (w - w_avg)``
                (StyleGAN). See :mod:`lightning_gen.latents`.
        """
        chunks = self.iter_samples(n, seed, labels, batch_size, truncation=truncation)
        return torch.cat([chunk.cpu() for chunk in chunks])

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Images in [-1, 1] for a batch of latents (float, (B, latent_dim)) or of integer seeds ((B,)).

        A seed ``s`` gives the same image as ``sample(1, seed=s)``. Conditional models take ``(latents or
        seeds, labels)`` pairs, or use ``s % num_classes`` as the label of seed ``s``. A dict batch
        ``{"seeds" or "latents": ..., "labels": ..., "truncation": psi}`` (what ``SeedDataModule(truncation=psi)``
        yields) samples with truncation: seed ``s`` then gives ``sample(1, seed=s, truncation=psi)``.
        """
        psi = None
        if isinstance(batch, dict):
            inputs = batch["seeds"] if "seeds" in batch else batch["latents"]
            labels, psi = batch.get("labels"), check_truncation(batch.get("truncation"))
        else:
            inputs, labels = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        inputs = torch.as_tensor(inputs)
        if inputs.is_floating_point():
            if inputs.ndim != 2 or inputs.shape[1] != self.latent_dim:
                raise ValueError(f"Latent batches must have shape (B, {self.latent_dim}), got {tuple(inputs.shape)}.")
            if not math.isinf(self._truncation_threshold(psi)):
                raise ValueError(
                    "Truncating given latents needs a generator with a mapping network; Gaussian latents are "
                    "truncated while they are drawn. Pass seeds, or draw the latents with "
                    "lightning_gen.latents.truncated_normal."
                )
            z = inputs.to(self.device)
        else:
            seeds = inputs.flatten().tolist()  # a handful of integers per batch; predict is not a hot loop
            threshold = self._truncation_threshold(psi)
            z = torch.cat([self._latents_for_sampling(1, int(s), threshold) for s in seeds]).to(self.device)
            if labels is None and self.num_classes:
                labels = torch.tensor(seeds) % self.num_classes
        if self.num_classes and labels is None:
            labels = torch.arange(z.shape[0]) % self.num_classes
        labels = None if labels is None else torch.as_tensor(labels).to(self.device)
        with torch.no_grad():
            return self._truncated_batch(z, labels, psi).float().clamp(-1, 1)


def kl_warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over ``warmup_steps`` updates (1 when warm-up is off)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


class eval_mode:
    """Put modules in eval mode for a block, then give every submodule back its own previous mode.

    ``module.train(was_training)`` would force every submodule into the parent's mode (a frozen BatchNorm
    in eval mode inside a training network would come back training); the modes are restored one by one
    instead, also when the block raises.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        >>> _ = net[1].eval()                      # frozen statistics inside a training network
        >>> with eval_mode(net):
        ...     net.training, net[1].training
        (False, False)
        >>> net.training, net[1].training
        (True, False)
    """

    def __init__(self, *modules: nn.Module):
        self.modules = modules
        self.modes: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for module in self.modules for m in module.modules()]
        for module in self.modules:
            module.eval()

    def __exit__(self, *exc: Any) -> None:
        for module, training in self.modes:
            module.training = training
