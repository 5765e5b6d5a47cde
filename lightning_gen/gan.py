"""``GANModule``: a GAN trained with alternating discriminator / generator updates.

Follow one batch: the data module yields images (float in [-1, 1] once on the device);
:meth:`GANModule.training_step` runs ``n_critic`` discriminator updates and then one generator update,
each computing its loss from :mod:`lightning_gen.losses` and stepping its own optimizer through
:meth:`GenerativeModule._update`. The Lightning plumbing that makes those updates correct under mixed
precision and DDP is in :mod:`lightning_gen._base`.

Step counting: Lightning's ``trainer.global_step`` counts *optimizer* steps, so one batch advances it
by ``n_critic + 1``. ``Trainer(max_steps=N)`` therefore stops after ``N / (n_critic + 1)`` generator
updates. The module's own counter, :attr:`GANModule.generator_step`, counts generator updates, is
logged as ``train/generator_step`` and is what the metric callbacks and sample grids are indexed by.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import OptimizerCallable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from lightning_gen._base import GenerativeModule
from lightning_gen._images import log_image_grid
from lightning_gen.losses import GAN_LOSSES, discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from lightning_gen.networks.dcgan import DISCRIMINATOR_NORMS, DCGANDiscriminator, DCGANGenerator
from lightning_gen.networks._layout import validate_image_size, validate_positive

# The same type LightningCLI uses for optimizer arguments, so configs can set class_path + init_args.
OptimizerFactory = OptimizerCallable


class GANModule(GenerativeModule):
    """A GAN as a LightningModule, with DCGAN networks unless you pass your own.

    Args:
        image_size: height and width of the images (power of two, 16 to 256, for the DCGAN networks).
        channels: image channels.
        latent_dim: size of the generator's noise vector.
        width: base feature maps of the DCGAN networks (the paper's ngf / ndf).
        loss: ``"bce"`` (non-saturating, the default), ``"hinge"`` or ``"wgan-gp"``.
        n_critic: discriminator updates per generator update, all on the same real batch with fresh noise.
        lr_g: generator learning rate (Adam).
        lr_d: discriminator learning rate (Adam).
        betas_g: generator Adam betas; (0.5, 0.999) as in the DCGAN paper.
        betas_d: discriminator Adam betas.
        gp_weight: gradient-penalty weight for ``loss="wgan-gp"`` (lambda in the paper).
        r1_weight: R1 penalty weight gamma on real data (0 disables it); the penalty is scaled by gamma / 2.
        ema_decay: keep an exponential moving average of the generator with this decay (e.g. 0.999) and
            use it for :meth:`sample` and evaluation. ``None`` disables it.
        num_classes: > 0 makes both networks class-conditional; batches must then carry labels.
        d_norm: discriminator normalisation, ``"batch"``, ``"layer"`` or ``"none"``. ``None`` picks
            ``"layer"`` for ``wgan-gp`` (a gradient penalty per sample is ill-defined with BatchNorm's
            cross-sample coupling) and ``"batch"`` otherwise.
        spectral_norm: spectral normalisation on the discriminator's layers.
        gradient_clip_val: clip both networks' gradients to this norm (or value) after unscaling.
        gradient_clip_algorithm: ``"norm"`` or ``"value"``.
        on_nonfinite: ``"raise"`` stops training on a non-finite loss; ``"skip"`` skips that half-step.
        num_sample_images: images in the fixed-noise grid logged each validation epoch.
        generator: any module mapping (B, latent_dim) noise (and labels when conditional) to images in
            [-1, 1]; replaces the DCGAN generator.
        discriminator: any module mapping images (and labels) to (B,) or (B, 1) logits.
        g_optimizer: factory ``params -> Optimizer`` for the generator; overrides ``lr_g``/``betas_g``.
            In a LightningCLI config: ``g_optimizer: {class_path: torch.optim.RMSprop, init_args: {lr: 5e-5}}``.
        d_optimizer: the same for the discriminator.

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
        n_critic: int = 1,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas_g: tuple[float, float] = (0.5, 0.999),
        betas_d: tuple[float, float] = (0.5, 0.999),
        gp_weight: float = 10.0,
        r1_weight: float = 0.0,
        ema_decay: float | None = None,
        num_classes: int = 0,
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
    ):
        super().__init__()
        self._check_choice("loss", loss, GAN_LOSSES)
        validate_positive("n_critic", n_critic)
        validate_positive("channels", channels)
        validate_positive("latent_dim", latent_dim)
        validate_positive("num_sample_images", num_sample_images)
        if generator is None or discriminator is None:
            validate_image_size(image_size)
            validate_positive("width", width)
        if d_norm is None:
            d_norm = "layer" if loss == "wgan-gp" else "batch"
        self._check_choice("d_norm", d_norm, DISCRIMINATOR_NORMS)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None (no EMA), got {ema_decay!r}.")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes!r}.")
        for name, value in (("gp_weight", gp_weight), ("r1_weight", r1_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        self._check_common_args(on_nonfinite, gradient_clip_val, gradient_clip_algorithm)
        # Modules and optimizer factories are not hyper-parameters: pass them again to load_from_checkpoint.
        self.save_hyperparameters(ignore=["generator", "discriminator", "g_optimizer", "d_optimizer"])
        self.hparams.d_norm = d_norm
        self.hparams.custom_networks = generator is not None or discriminator is not None

        self.generator = generator or DCGANGenerator(image_size, channels, latent_dim, width, num_classes)
        self.discriminator = discriminator or DCGANDiscriminator(
            image_size, channels, width, num_classes, norm=d_norm, spectral_norm=spectral_norm
        )
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None:
            # use_buffers=True averages BatchNorm statistics too, so the EMA generator is self-consistent.
            self.generator_ema = AveragedModel(self.generator, multi_avg_fn=ema_with_warmup(ema_decay), use_buffers=True)
            self.generator_ema.requires_grad_(False)  # DDP must not wait for gradients that never come
        self._g_optimizer, self._d_optimizer = g_optimizer, d_optimizer

        # Fixed noise for the sample grid, saved with the model so grids stay comparable across resumes.
        grid_rng = torch.Generator().manual_seed(0)
        self.register_buffer("fixed_noise", torch.randn(num_sample_images, latent_dim, generator=grid_rng))
        self.register_buffer("fixed_labels", torch.arange(num_sample_images) % max(num_classes, 1))

    # ----------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        g_params, d_params = self.generator.parameters(), self.discriminator.parameters()
        opt_g = self._g_optimizer(g_params) if self._g_optimizer else torch.optim.Adam(g_params, lr=hp.lr_g, betas=tuple(hp.betas_g))
        opt_d = self._d_optimizer(d_params) if self._d_optimizer else torch.optim.Adam(d_params, lr=hp.lr_d, betas=tuple(hp.betas_d))
        return [opt_g, opt_d]

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Generate images from noise with the training generator."""
        return self._generate(self.generator, z, labels)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        real, labels = self._prepare_batch(batch)
        opt_g, opt_d = self._optimizers()
        for _ in range(self.hparams.n_critic):
            d_loss, real_logits, fake_logits = self._discriminator_update(opt_d, real, labels)
        g_loss = self._generator_update(opt_g, real.shape[0], labels)
        self.log_dict(
            {
                "train/d_loss": d_loss,
                "train/g_loss": g_loss,
                "train/d_real": real_logits.float().mean(),  # mean D logit on real images
                "train/d_fake": fake_logits.float().mean(),  # mean D logit on generated images
            },
            prog_bar=True,
        )
        self.log("train/generator_step", float(self.generator_step))

    def _discriminator_update(self, opt_d: Any, real: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        hp = self.hparams
        with torch.no_grad():
            fake = self._generate(self.generator, self._noise(real.shape[0]), labels)
        # toggled_optimizer turns off requires_grad for the generator, so no graph is kept for it.
        with self.toggled_optimizer(opt_d):
            real_logits, fake_logits = self._discriminate(real, labels), self._discriminate(fake, labels)
            loss = discriminator_loss(hp.loss, real_logits, fake_logits)
            if hp.loss == "wgan-gp" and hp.gp_weight:
                loss = loss + hp.gp_weight * gradient_penalty(lambda x: self._discriminate(x, labels), real, fake, self._noise_generator())
            if hp.r1_weight:
                loss = loss + hp.r1_weight / 2 * r1_penalty(lambda x: self._discriminate(x, labels), real)
            self._update(opt_d, loss, "discriminator")
        return loss.detach(), real_logits.detach(), fake_logits.detach()

    def _generator_update(self, opt_g: Any, batch_size: int, labels: Tensor | None) -> Tensor:
        with self.toggled_optimizer(opt_g):
            fake = self._generate(self.generator, self._noise(batch_size), labels)
            loss = generator_loss(self.hparams.loss, self._discriminate(fake, labels))
            stepped = self._update(opt_g, loss, "generator")
        if stepped:
            if self.generator_ema is not None:
                self.generator_ema.update_parameters(self.generator)
            self.generator_step += 1
        return loss.detach()

    def _generate(self, generator: nn.Module, z: Tensor, labels: Tensor | None) -> Tensor:
        return generator(z, labels) if self.num_classes else generator(z)

    def _discriminate(self, images: Tensor, labels: Tensor | None) -> Tensor:
        logits = self.discriminator(images, labels) if self.num_classes else self.discriminator(images)
        return logits.reshape(images.shape[0])

    # ----------------------------------------------------------------------------------------------
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        real, labels = self._prepare_batch(batch)
        self.log("val/d_real", self._discriminate(real, labels).float().mean(), sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        real, labels = self._prepare_batch(batch)
        self.log("test/d_real", self._discriminate(real, labels).float().mean(), sync_dist=True)

    def log_sample_grids(self) -> None:
        """Log a grid of the sampling generator's images on the fixed noise (the same images every time)."""
        generator = self.sampling_generator
        was_training = generator.training
        generator.eval()
        with torch.no_grad():
            images = self._generate(generator, self.fixed_noise, self.fixed_labels if self.num_classes else None)
        generator.train(was_training)
        log_image_grid(self.trainer, "samples", images)

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator used for sampling and evaluation: the EMA copy when there is one."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    def inference_networks(self) -> dict[str, nn.Module]:
        networks = {"generator": self.generator}
        if self.generator_ema is not None:
            networks["generator_ema"] = self.generator_ema.module
        return networks

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, labels: Tensor | None = None, batch_size: int = 256) -> Tensor:
        """Generate ``n`` images in [-1, 1], shape (n, C, H, W), with the EMA generator when there is one.

        Args:
            n: number of images.
            seed: makes the result repeatable, on any device (noise is drawn on the CPU).
            labels: class labels (n,) for a conditional model; default cycles through the classes.
            batch_size: images generated per forward pass, to bound memory for large ``n``.
        """
        validate_positive("n", n)
        generator = self.sampling_generator
        was_training = generator.training
        generator.eval()
        z = self._latents_for_sampling(n, seed)
        if self.num_classes:
            labels = torch.arange(n) % self.num_classes if labels is None else torch.as_tensor(labels)
            if labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}.")
            labels = labels.to(self.device)
        chunks = [
            self._generate(generator, z[i : i + batch_size], None if labels is None else labels[i : i + batch_size]).float()
            for i in range(0, n, batch_size)
        ]
        generator.train(was_training)
        return torch.cat(chunks).clamp(-1, 1)


def ema_with_warmup(decay: float):
    """An ``AveragedModel`` update with decay ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates.

    torch's ``get_ema_multi_avg_fn`` applies the full decay from the first update, so with 0.999 the
    EMA generator is still about half its random initialisation (weights *and* BatchNorm statistics)
    after 700 updates and samples come out flat grey for most of a short run. The warm-up (the
    convention of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``) lets it track early
    training, then settles at ``decay``.
    """

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        if not averaged[0].is_floating_point():  # e.g. BatchNorm's num_batches_tracked: keep the latest
            torch._foreach_copy_(averaged, current)
            return
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update
