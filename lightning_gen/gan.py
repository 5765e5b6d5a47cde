"""``GANModule``: a GAN trained with alternating discriminator / generator updates.

Follow one batch: the data module yields images (float in [-1, 1] once on the device);
:meth:`GANModule.training_step` runs one discriminator update on it and, on every ``n_critic``-th
batch, one generator update, each computing its loss from :mod:`lightning_gen.losses` and stepping its
own optimizer through :meth:`GenerativeModule._update`. The Lightning plumbing that makes those
updates correct under mixed precision and DDP is in :mod:`lightning_gen._base`.

Step counting: each critic update sees a fresh real batch, as in WGAN-GP's algorithm, so one generator
update consumes ``n_critic`` batches. Lightning's ``trainer.global_step`` counts *optimizer* steps
(``n_critic + 1`` per generator update), so ``Trainer(max_steps=N)`` stops after about
``N / (n_critic + 1)`` generator updates. The module's own counters, :attr:`GANModule.generator_step`
and :attr:`GANModule.discriminator_step`, count the updates that really happened (a step the fp16
GradScaler skipped is not counted); ``generator_step`` is logged as ``train/generator_step`` and is what
the metric callbacks, sample grids and step-wise LR schedulers follow.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

import torch
from torch import Tensor, nn

from lightning_gen._base import GenerativeModule, eval_mode
from lightning_gen._images import log_image_grid
from lightning_gen.augment import LeCamRegularizer, build_augment, sum_across_processes
from lightning_gen.ema import BATCHNORM_CONVENTIONS, GeneratorEMA
from lightning_gen.latents import MappingNetwork, generate_path, interpolate_latents, walk_latents, walk_weights
from lightning_gen.losses import GAN_LOSSES, discriminator_loss, generator_loss, gradient_penalty, r1_penalty, r1_penalty_from_logits
from lightning_gen.networks.dcgan import DISCRIMINATOR_NORMS, DCGANDiscriminator, DCGANGenerator
from lightning_gen.networks._layout import validate_image_size, validate_positive

# The types LightningCLI uses for optimizer and scheduler arguments, so configs can set class_path + init_args.
OptimizerFactory = OptimizerCallable
LRSchedulerFactory = LRSchedulerCallable

FAKE_LABELS = ("data", "uniform")

# What ``n_critic=None`` and ``betas_*=None`` mean, per loss: DCGAN's (Radford et al. 2016) unless the loss's
# paper says otherwise. WGAN-GP (Gulrajani et al. 2017, Algorithm 1): Adam(0, 0.9) and 5 critic updates.
DCGAN_DEFAULTS = {"betas": (0.5, 0.999), "n_critic": 1}
LOSS_DEFAULTS = {"wgan-gp": {"betas": (0.0, 0.9), "n_critic": 5}}

# The penalties on the discriminator's input gradient, by their weight's argument name, each with when it is
# on. Their backward differentiates a gradient again (double backward), which compiled graphs don't support
# (see GenerativeModule._refuse_compiled_double_backward). A new input-gradient penalty gets a line here.
DOUBLE_BACKWARD_PENALTIES = {
    "gp_weight": lambda hp: hp.loss == "wgan-gp" and hp.gp_weight > 0,
    "r1_weight": lambda hp: hp.r1_weight > 0,
}

# BigGAN-style standing statistics for ema_batchnorm="recompute": this many batches of this many latents,
# drawn from a fixed seed, so the statistics depend on the averaged weights only.
STANDING_STATISTICS_BATCHES, STANDING_STATISTICS_BATCH_SIZE, STANDING_STATISTICS_SEED = 16, 64, 0


class GANModule(GenerativeModule):
    """A GAN as a LightningModule, with DCGAN networks unless you pass your own.

    Args:
        image_size: height and width of the images (power of two, 16 to 256, for the DCGAN networks).
        channels: image channels.
        latent_dim: size of the generator's noise vector.
        width: base feature maps of the DCGAN networks (the paper's ngf / ndf).
        loss: ``"bce"`` (non-saturating, the default), ``"hinge"`` or ``"wgan-gp"``.
        n_critic: discriminator updates per generator update; each takes its own real batch, so the
            generator updates on every ``n_critic``-th batch. ``None`` picks the loss's default: 5 for
            ``"wgan-gp"`` (the WGAN-GP paper's), 1 otherwise.
        lr_g: generator learning rate (Adam; ``fused`` where the device has a kernel, else ``foreach``).
        lr_d: discriminator learning rate (Adam).
        betas_g: generator Adam betas. ``None`` picks the loss's default: (0, 0.9) for ``"wgan-gp"`` (the
            WGAN-GP paper's), (0.5, 0.999) otherwise (the DCGAN paper's). The resolved values are what
            ``hparams`` and checkpoints hold.
        betas_d: discriminator Adam betas, resolved the same way.
        gp_weight: gradient-penalty weight for ``loss="wgan-gp"`` (lambda in the paper).
        r1_weight: R1 penalty weight gamma on real data (0 disables it); the penalty is scaled by gamma / 2.
            Without autocast it reuses the discriminator's forward on the real batch (no third forward).
        ema_decay: keep an exponential moving average of the generator with this decay (e.g. 0.999) and
            use it for :meth:`sample` and evaluation. ``None`` disables it.
        ema_batchnorm: what the EMA generator's BatchNorm running statistics are (see
            :mod:`lightning_gen.ema`): ``"average"`` (averaged like the weights), ``"copy"`` (the live
            generator's, as StyleGAN2-ADA) or ``"recompute"`` (standing statistics of the averaged weights,
            as BigGAN: re-estimated from 16 seeded batches of 64 latents before the next sample, grid, metric
            or export after an update, never per step). Under DDP every rank ends each epoch with identical
            EMA weights and buffers: the weights follow the identical live weights, the buffers are broadcast
            from rank 0 at the epoch end, and recomputed statistics come from identical weights and latents.
        num_classes: > 0 makes both networks class-conditional; batches must then carry labels.
        fake_labels: the labels of the generated images during training (class-conditional models):
            ``"data"`` (default) gives each fake the label of the real image at its place in the batch, so
            generated classes follow the data's class frequencies, imbalance included, without a host read;
            ``"uniform"`` draws them uniformly (from the training noise generator), for a model that should
            learn rare classes as often as common ones. The gradient penalty and R1 use the real labels.
        d_norm: discriminator normalisation, ``"batch"``, ``"layer"`` or ``"none"``. ``None`` picks
            ``"layer"`` for ``wgan-gp`` and whenever ``r1_weight > 0`` (a gradient penalty per sample is
            ill-defined with BatchNorm's cross-sample coupling) and ``"batch"`` otherwise.
        spectral_norm: spectral normalisation on the discriminator's layers.
        gradient_clip_val: clip both networks' gradients to this norm (or value) after unscaling.
        gradient_clip_algorithm: ``"norm"`` or ``"value"``.
        on_nonfinite: ``"raise"`` stops training on a non-finite loss (looked at on logging steps, at
            epoch end and before checkpoints, so no step waits for the device); ``"skip"`` skips those
            half-steps and warns there with their count, by kind, and generator-step range. Under
            ``16-mixed`` the GradScaler skips them (a non-finite loss counts as an overflow) and they are not
            counted; without it they are undone on the device (a copy of parameters and optimizer state per
            half-step) and the host counters still count them.
        num_sample_images: images in the fixed-noise grid logged each validation epoch.
        generator: any module mapping (B, latent_dim) noise (and labels when conditional) to images in
            [-1, 1]; replaces the DCGAN generator.
        discriminator: any module mapping images (and labels) to (B,) or (B, 1) logits.
        g_optimizer: factory ``params -> Optimizer`` for the generator; overrides ``lr_g``/``betas_g``.
            In a LightningCLI config: ``g_optimizer: {class_path: torch.optim.RMSprop, init_args: {lr: 5e-5}}``.
        d_optimizer: the same for the discriminator.
        g_lr_scheduler: factory ``optimizer -> LRScheduler`` for the generator's optimizer (stepped by the
            module: per generator update or per epoch, see ``lr_scheduler_interval``).
        d_lr_scheduler: the same for the discriminator's optimizer.
        lr_scheduler_interval: ``"epoch"`` or ``"step"`` (one step per generator update, for both schedulers).
        compile: compile both networks with ``nn.Module.compile()`` (parameter names unchanged, so
            checkpoints, the EMA and Hub exports are those of the plain networks); a dict is passed as
            keyword arguments (e.g. ``{"mode": "max-autotune"}``). Refused with an input-gradient penalty
            (``wgan-gp``'s ``gp_weight``, ``r1_weight``): torch cannot differentiate the compiled
            discriminator's gradient again; compile the generator alone there (``model.generator.compile()``).
        channels_last: put the networks and batches in channels-last memory format (faster convolutions
            on tensor-core GPUs).
        augment: differentiable augmentation of every image the discriminator sees, real and generated,
            in both half-steps (and inside the gradient penalties): ``None``, ``"diffaugment"`` (DiffAugment,
            policy ``"diffaugment:color,translation,cutout"``) or ``"ada"`` (adaptive, ``"ada:bgc"``); see
            :mod:`lightning_gen.augment`. For a few hundred to a few thousand training images.
        ada_target: ADA's target for the overfitting signal E[sign(D(real))].
        ada_speed_images: images over which ADA's probability ``p`` can move from 0 to 1.
        ada_interval: discriminator steps between ADA's adjustments of ``p``.
        lecam_weight: weight of LeCam regularisation of the discriminator (0 disables it; 0.1-0.3 in the paper).

    Example:
        >>> import lightning as L
        >>> from lightning_gen import GANModule
        >>> model = GANModule(image_size=16, channels=1, latent_dim=8, width=8)
        >>> model.sample(4, seed=0).shape
        torch.Size([4, 1, 16, 16])
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 100,
        width: int = 64,
        loss: str = "bce",
        n_critic: int | None = None,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas_g: tuple[float, float] | None = None,
        betas_d: tuple[float, float] | None = None,
        gp_weight: float = 10.0,
        r1_weight: float = 0.0,
        ema_decay: float | None = None,
        ema_batchnorm: str = "average",
        num_classes: int = 0,
        fake_labels: str = "data",
        d_norm: str | None = None,
        spectral_norm: bool = False,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        on_nonfinite: str = "raise",
        num_sample_images: int = 64,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        g_optimizer: OptimizerFactory | None = None,
        d_optimizer: OptimizerFactory | None = None,
        g_lr_scheduler: LRSchedulerFactory | None = None,
        d_lr_scheduler: LRSchedulerFactory | None = None,
        lr_scheduler_interval: str = "epoch",
        compile: bool | dict = False,
        channels_last: bool = False,
        augment: str | None = None,
        ada_target: float = 0.6,
        ada_speed_images: int = 500_000,
        ada_interval: int = 4,
        lecam_weight: float = 0.0,
    ):
        super().__init__()
        self._check_choice("loss", loss, GAN_LOSSES)
        self._check_choice("ema_batchnorm", ema_batchnorm, BATCHNORM_CONVENTIONS)
        self._check_choice("fake_labels", fake_labels, FAKE_LABELS)
        defaults = LOSS_DEFAULTS.get(loss, DCGAN_DEFAULTS)
        n_critic = defaults["n_critic"] if n_critic is None else n_critic
        validate_positive("n_critic", n_critic)
        validate_positive("channels", channels)
        validate_positive("latent_dim", latent_dim)
        validate_positive("num_sample_images", num_sample_images)
        if generator is None or discriminator is None:
            validate_image_size(image_size)
            validate_positive("width", width)
        if d_norm is None:
            d_norm = "layer" if loss == "wgan-gp" or r1_weight > 0 else "batch"
        self._check_choice("d_norm", d_norm, DISCRIMINATOR_NORMS)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None (no EMA), got {ema_decay!r}.")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes!r}.")
        for name, value in (("gp_weight", gp_weight), ("r1_weight", r1_weight), ("lecam_weight", lecam_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        self._check_common_args(on_nonfinite, gradient_clip_val, gradient_clip_algorithm, lr_scheduler_interval)
        # Modules and optimizer factories are not hyper-parameters: pass them again to load_from_checkpoint.
        self.save_hyperparameters(ignore=["generator", "discriminator", "g_optimizer", "d_optimizer", "g_lr_scheduler", "d_lr_scheduler"])
        # The resolved values, so hparams, checkpoints and Hub configs say what ran.
        self.hparams.d_norm, self.hparams.n_critic = d_norm, n_critic
        self.hparams.betas_g = tuple(defaults["betas"] if betas_g is None else betas_g)
        self.hparams.betas_d = tuple(defaults["betas"] if betas_d is None else betas_d)
        # Not a hyper-parameter (LightningCLI passes checkpoint hparams back to __init__); kept in the checkpoint's
        # lightning_gen record instead, so loaders can refuse checkpoints whose networks they can't rebuild.
        self.custom_networks = generator is not None or discriminator is not None

        self.generator = _uncompiled(generator) or DCGANGenerator(image_size, channels, latent_dim, width, num_classes)
        self.discriminator = _uncompiled(discriminator) or DCGANDiscriminator(
            image_size, channels, width, num_classes, norm=d_norm, spectral_norm=spectral_norm
        )
        self._refuse_compiled_double_backward(self._double_backward_penalties(), self.discriminator)
        self.generator_ema = GeneratorEMA(self.generator, ema_decay, ema_batchnorm) if ema_decay is not None else None
        self._g_optimizer, self._d_optimizer = g_optimizer, d_optimizer
        self._g_lr_scheduler, self._d_lr_scheduler = g_lr_scheduler, d_lr_scheduler
        # Submodules, so ADA's probability and LeCam's anchors are checkpointed with the weights.
        self.augment = build_augment(augment, ada_target=ada_target, ada_speed_images=ada_speed_images, ada_interval=ada_interval)
        self.lecam = LeCamRegularizer() if lecam_weight > 0 else None
        self.discriminator_step = 0  # discriminator updates done (skipped fp16 steps not counted)
        self._critic_batches = 0  # batches seen by the critic; the generator steps on every n_critic-th
        self._last_g_loss: Tensor | None = None

        # Fixed noise for the sample grid, saved with the model so grids stay comparable across resumes.
        grid_rng = torch.Generator().manual_seed(0)
        self.register_buffer("fixed_noise", torch.randn(num_sample_images, latent_dim, generator=grid_rng))
        self.register_buffer("fixed_labels", torch.arange(num_sample_images) % max(num_classes, 1))

    # ----------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        g_params, d_params = self.generator.parameters(), self.discriminator.parameters()
        opt_g = self._optimizer(self._g_optimizer, g_params, hp.lr_g, hp.betas_g)
        opt_d = self._optimizer(self._d_optimizer, d_params, hp.lr_d, hp.betas_d)
        return self._optimizers_and_schedulers(
            [opt_g, opt_d], [self._g_lr_scheduler, self._d_lr_scheduler], hp.get("lr_scheduler_interval", "epoch")
        )

    def ddp_networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def _double_backward_penalties(self) -> list[str]:
        """The active penalties whose backward differentiates the discriminator's input gradient."""
        return [f"{name}={self.hparams[name]}" for name, active in DOUBLE_BACKWARD_PENALTIES.items() if active(self.hparams)]

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Generate images from noise with the sampling generator (the EMA copy when there is one), like :meth:`sample`.

        The module's current train/eval mode applies; :meth:`sample` always samples in eval mode.
        """
        return self._generate(self.sampling_generator, z, labels)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        real, labels = self._prepare_batch(batch)
        opt_g, opt_d = self._optimizers()
        d_loss, real_logits, fake_logits = self._discriminator_update(opt_d, real, labels)
        # The cadence follows batches, not successful critic updates: a step the fp16 GradScaler skipped must
        # not make the generator wait (or step twice) for it.
        self._critic_batches += 1
        if self._critic_batches % self.hparams.n_critic == 0:
            self._last_g_loss = self._generator_update(opt_g, real.shape[0], self._fake_labels(labels))
        if self._logs_this_batch():  # see GenerativeModule._logs_this_batch
            metrics = {
                "train/d_loss": d_loss,
                "train/d_real": real_logits.float().mean(),  # mean D logit on real images
                "train/d_fake": fake_logits.float().mean(),  # mean D logit on generated images
                "train/generator_step": float(self.generator_step),
            }
            if self._last_g_loss is not None:
                metrics["train/g_loss"] = self._last_g_loss
            if self.augment is not None:
                metrics["train/augment_p"] = self.augment.p
            if self.lecam is not None:
                metrics["train/lecam"] = self._last_lecam
            self.log_dict(metrics)
        self._log_progress_bar(d_loss)

    def _fake_labels(self, labels: Tensor | None) -> Tensor | None:
        """The labels to generate a batch with (see ``fake_labels``); drawn on the device, nothing read back."""
        if labels is None or self.hparams.get("fake_labels", "data") == "data":
            return labels
        return torch.randint(0, self.num_classes, labels.shape, device=labels.device, generator=self._noise_generator())

    def _discriminator_update(self, opt_d: Any, real: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        hp = self.hparams
        fake_labels = self._fake_labels(labels)
        with torch.no_grad():
            fake = self._generate(self.generator, self._noise(real.shape[0]), fake_labels)
        discriminator = self._network("discriminator")
        # R1 from the same forward as the real logits, when nothing forces the penalty into another precision.
        r1_from_forward = hp.r1_weight > 0 and not torch.is_autocast_enabled(real.device.type)
        if r1_from_forward:
            real = real.detach().requires_grad_(True)
        # toggled_optimizer turns off requires_grad for the generator, so no graph is kept for it.
        with self.toggled_optimizer(opt_d):
            real_seen, fake_seen = self._augmented(real), self._augmented(fake)  # what D sees
            real_logits = self._discriminate(real_seen, labels, discriminator)
            fake_logits = self._discriminate(fake_seen, fake_labels, discriminator)
            loss = discriminator_loss(hp.loss, real_logits, fake_logits)
            if hp.loss == "wgan-gp" and hp.gp_weight:
                critic = lambda x: self._discriminate(x, labels, discriminator)  # noqa: E731
                loss = loss + hp.gp_weight * gradient_penalty(critic, real_seen, fake_seen, self._noise_generator())
            if hp.r1_weight:
                # With respect to the un-augmented reals, through the augmentation (ADA's definition).
                if r1_from_forward:
                    penalty = r1_penalty_from_logits(real_logits, real)
                else:  # under autocast: a float32 forward of its own (see losses.py)
                    penalty = r1_penalty(lambda x: self._discriminate(self._augmented(x), labels, discriminator), real)
                loss = loss + hp.r1_weight / 2 * penalty
            if self.lecam is not None:
                self.lecam.update(real_logits.detach(), fake_logits.detach(), reduce=sum_across_processes)
                lecam = self.lecam(real_logits, fake_logits)
                loss = loss + hp.lecam_weight * lecam
                self._last_lecam = lecam.detach()
            if self._update(opt_d, loss, "discriminator"):
                self.discriminator_step += 1
        if self.augment is not None:  # every rank, every D step: ADA all-reduces its signal every ada_interval calls
            self.augment.update(real_logits.detach(), reduce=sum_across_processes)
        return loss.detach(), real_logits.detach(), fake_logits.detach()

    def _generator_update(self, opt_g: Any, batch_size: int, labels: Tensor | None) -> Tensor:
        with self.toggled_optimizer(opt_g):
            fake = self._generate(self._network("generator"), self._noise(batch_size), labels)
            # The idle discriminator is called directly, not through its DDP wrapper: it gets no gradient here.
            loss = generator_loss(self.hparams.loss, self._discriminate(self._augmented(fake), labels))
            stepped = self._update(opt_g, loss, "generator")
        if stepped:
            if self.generator_ema is not None:
                self.generator_ema.update(self.generator)
            self.generator_step += 1
            self._step_lr_schedulers("step")
        return loss.detach()

    def _generate(self, generator: nn.Module, z: Tensor, labels: Tensor | None) -> Tensor:
        return generator(z, labels) if self.num_classes else generator(z)

    def _discriminate(self, images: Tensor, labels: Tensor | None, discriminator: nn.Module | None = None) -> Tensor:
        discriminator = self.discriminator if discriminator is None else discriminator
        logits = discriminator(images, labels) if self.num_classes else discriminator(images)
        return logits.reshape(images.shape[0])

    def _extra_counters(self) -> dict[str, int]:
        return {"discriminator_step": self.discriminator_step, "critic_batches": self._critic_batches, "custom_networks": self.custom_networks}

    def _restore_extra_counters(self, meta: dict[str, Any]) -> None:
        self.discriminator_step = int(meta.get("discriminator_step", 0))
        self._critic_batches = int(meta.get("critic_batches", self.discriminator_step))

    # ----------------------------------------------------------------------------------------------
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        real, labels = self._prepare_batch(batch)
        self.log("val/d_real", self._discriminate(real, labels).float().mean(), sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        real, labels = self._prepare_batch(batch)
        self.log("test/d_real", self._discriminate(real, labels).float().mean(), sync_dist=True)

    def log_sample_grids(self) -> None:
        """Log a grid of the sampling generator's images on the fixed noise (the same images every time).

        A class-conditional model whose ``num_sample_images`` is a multiple of ``num_classes`` gets one row per
        class (class 0 on top), so a glance says which classes it draws.
        """
        generator = self.sampling_generator
        with eval_mode(generator), torch.no_grad():
            images = self._generate(generator, self.fixed_noise, self.fixed_labels if self.num_classes else None)
        nrow = None
        if self.num_classes and len(images) % self.num_classes == 0:
            images = images[torch.argsort(self.fixed_labels, stable=True)]
            nrow = len(images) // self.num_classes
        log_image_grid(self.trainer, "samples", images, nrow=nrow)

    def on_train_epoch_end(self) -> None:
        self._broadcast_ema_buffers()  # before the grid, so every rank samples with the same generator
        super().on_train_epoch_end()

    def _broadcast_ema_buffers(self) -> None:
        """Give every DDP rank rank 0's EMA buffers (once per epoch, a few small tensors).

        The EMA weights follow the live weights, which DDP keeps identical; BatchNorm statistics of the live
        generator are each rank's own, and so are "average" or "copy" EMA statistics made from them.
        """
        if self.generator_ema is None or self._trainer is None or self.trainer.world_size < 2:
            return
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        for buffer in self.generator_ema.module.buffers():
            torch.distributed.broadcast(buffer, src=0)

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator used for sampling and evaluation: the EMA copy when there is one.

        With ``ema_batchnorm="recompute"`` its standing statistics are brought up to date first, when an
        update or a load made them stale.
        """
        if self.generator_ema is None:
            return self.generator
        if self.generator_ema.needs_statistics:
            self.generator_ema.recompute_batchnorm_statistics(self._standing_statistics_batches())
        return self.generator_ema.module

    def _standing_statistics_batches(self) -> Any:
        """The EMA generator's forward arguments for the standing statistics: seeded latents (and cycled labels)."""
        rng = torch.Generator().manual_seed(STANDING_STATISTICS_SEED)  # on the CPU: the same on every device
        size = STANDING_STATISTICS_BATCH_SIZE
        labels = (torch.arange(size) % self.num_classes).to(self.device) if self.num_classes else None
        for _ in range(STANDING_STATISTICS_BATCHES):
            z = torch.randn(size, self.latent_dim, generator=rng).to(self.device)
            yield (z, labels) if self.num_classes else (z,)

    def inference_networks(self) -> dict[str, nn.Module]:
        networks = {"generator": self.generator}
        if self.generator_ema is not None:
            networks["generator_ema"] = self.sampling_generator  # with up-to-date statistics
        return networks

    def _sample_batch(self, z: Tensor, labels: Tensor | None) -> Tensor:
        generator = self.sampling_generator
        with eval_mode(generator), torch.no_grad():
            return self._generate(generator, z, labels)

    def _mapping_network(self) -> nn.Module | None:
        generator = self.sampling_generator
        return generator if isinstance(generator, MappingNetwork) else None

    @torch.no_grad()
    def interpolate(
        self, z1: Tensor, z2: Tensor, steps: int = 8, method: str = "slerp", labels: Any = None
    ) -> Tensor:
        """Images of ``steps`` latents from ``z1`` to ``z2`` (both ends included), like ``VAE.interpolate``.

        Args:
            z1, z2: latents (latent_dim,) -> returns (steps, C, H, W), or batches (B, latent_dim) -> returns
                (B, steps, C, H, W).
            steps: images per path, >= 2.
            method: ``"slerp"`` (along the sphere, where Gaussian latents live) or ``"lerp"``.
            labels: conditional models only: labels kept along the path (an int or (B,)), or a pair
                ``(start, end)`` whose label embeddings are mixed along the path (morphing; generators exposing
                ``label_embedding``). Default: the classes in turn, as ``sample`` uses them.
        """
        single = z1.ndim == 1
        z1, z2 = (z.unsqueeze(0) if single else z for z in (z1, z2))
        path = interpolate_latents(z1.float(), z2.float(), steps, method)  # (B, steps, D)
        start, end = self._path_labels(labels, z1.shape[0])
        t = torch.linspace(0, 1, steps).repeat(z1.shape[0])
        expand = (lambda x: None if x is None else x.repeat_interleave(steps))  # noqa: E731
        images = self._generate_path(path.flatten(0, 1), expand(start), expand(end), t).unflatten(0, (z1.shape[0], steps))
        return images[0] if single else images

    @torch.no_grad()
    def walk(
        self, points: Tensor, steps: int = 16, method: str = "slerp", labels: Tensor | None = None, loop: bool = False
    ) -> Tensor:
        """Images along a walk through latents ``points`` (K, latent_dim): ``steps`` frames per segment.

        Returns ((K - 1) * steps + 1, C, H, W), or (K * steps, C, H, W) with ``loop`` (back to the first point,
        for animations that repeat). ``labels`` (K,), conditional models only: one label per point, kept where
        neighbours agree and morphed between different ones (generators exposing ``label_embedding``);
        default: all of class 0.
        """
        path = walk_latents(points.float(), steps, method, loop)
        if not self.num_classes:
            if labels is not None:
                raise ValueError(f"{type(self).__name__} is unconditional (num_classes=0); labels must be None.")
            return self._generate_path(path, None, None, None)
        labels = torch.zeros(points.shape[0], dtype=torch.long) if labels is None else torch.as_tensor(labels).long()
        if labels.shape != (points.shape[0],):
            raise ValueError(f"labels must give one label per point, shape ({points.shape[0]},), got {tuple(labels.shape)}.")
        start, end, t = walk_weights(points.shape[0], steps, loop)
        return self._generate_path(path, labels[start], labels[end], t)

    def _path_labels(self, labels: Any, batch: int) -> tuple[Tensor | None, Tensor | None]:
        if isinstance(labels, (tuple, list)) and len(labels) == 2:
            start, end = (torch.as_tensor(x).long().expand(batch) for x in labels)
            return self._default_labels(batch, start.clone()), self._default_labels(batch, end.clone())
        kept = None if labels is None else torch.as_tensor(labels).long().expand(batch).clone()
        kept = self._default_labels(batch, kept)
        return kept, kept

    def _generate_path(self, z: Tensor, start: Tensor | None, end: Tensor | None, t: Tensor | None) -> Tensor:
        generator = self.sampling_generator
        move = (lambda x: None if x is None else x.to(self.device))  # noqa: E731
        with eval_mode(generator), torch.no_grad():
            images = generate_path(generator, z.to(self.device), move(start), move(end), t)
        return images.float().clamp(-1, 1).cpu()


def _uncompiled(network: nn.Module | None) -> nn.Module | None:
    """The plain module behind ``torch.compile(network)``: its ``_orig_mod.`` keys would break checkpoints and exports.

    Use ``GANModule(compile=True)`` instead, which compiles in place.
    """
    return getattr(network, "_orig_mod", network)
