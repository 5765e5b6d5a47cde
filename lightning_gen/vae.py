"""``VAE``: a convolutional variational auto-encoder, optionally with an adversarial term (VAE-GAN).

Follow one batch: images in [-1, 1] go through :class:`ConvEncoder` to (mu, logvar); z is drawn with
the reparameterization trick; :class:`ConvDecoder` maps z back to image space; the loss is the
negative ELBO, ``reconstruction + beta_t * KL``, with ``beta_t`` warmed up linearly over
``kl_warmup_steps``. With ``adversarial_weight > 0`` a DCGAN discriminator learns to tell data from
reconstructions and the VAE update adds ``adversarial_weight * generator_loss``. Both sides see
reconstructions decoded from a *sampled* z ~ q(z|x), as in Larsen et al. (2016): the adversarial term
has to score what the ELBO's reconstruction term decodes (the sampled z), and a discriminator trained
on the posterior-mean reconstructions instead would judge sharper images than the ones it is asked
about. The discriminator's reconstructions draw their own z (with the training noise generator). The
two updates
alternate through the same machinery as :class:`~lightning_gen.gan.GANModule`
(:mod:`lightning_gen._base`).

Likelihoods, per image and in nats (so ``val/elbo`` is a true lower bound on log p(x)):

* ``"gaussian"``: pixels in [-1, 1] are N(tanh(decoder(z)), sigma^2) with fixed ``sigma``
  (``gaussian_sigma``); the squared error is scaled by 1 / (2 sigma^2) plus the normaliser.
* ``"bernoulli"``: pixels mapped to [0, 1] are Bernoulli(sigmoid(decoder(z))), the usual choice for
  near-binary images.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lightning_gen._base import GenerativeModule, eval_mode, kl_warmup_factor
from lightning_gen._images import log_image_grid
from lightning_gen.augment import build_augment, sum_across_processes
from lightning_gen.losses import GAN_LOSSES, discriminator_loss, generator_loss
from lightning_gen.networks.conv_vae import ConvDecoder, ConvEncoder
from lightning_gen.networks.dcgan import DCGANDiscriminator
from lightning_gen.networks._layout import validate_positive

LIKELIHOODS = ("gaussian", "bernoulli")


class VAE(GenerativeModule):
    """A convolutional VAE as a LightningModule.

    Args:
        image_size: image height and width, a power of two from 16 to 256.
        channels: image channels.
        latent_dim: size of z.
        width: base feature maps of encoder and decoder.
        likelihood: ``"gaussian"`` (fixed-variance, MSE-like) or ``"bernoulli"``.
        gaussian_sigma: the Gaussian likelihood's standard deviation, in [-1, 1] pixel units. Smaller
            values weigh reconstruction more against the KL term (sharper, less regular latents).
        beta: weight of the KL term (beta-VAE; 1 is the plain ELBO).
        kl_warmup_steps: ramp the KL weight linearly from ~0 to ``beta`` over this many updates
            (0 disables the warm-up); helps against posterior collapse early in training.
        lr: Adam learning rate of the VAE (``fused`` Adam where the device has a kernel).
        betas: the VAE's Adam betas.
        adversarial_weight: > 0 adds a discriminator on reconstructions (VAE-GAN) with this weight.
        adversarial_loss: GAN loss for the adversarial term (``"bce"``, ``"hinge"``, ``"wgan-gp"``
            without the penalty is not offered: use ``"bce"`` or ``"hinge"``).
        lr_d: discriminator learning rate when ``adversarial_weight > 0``.
        betas_d: the discriminator's Adam betas.
        gradient_clip_val: clip gradients to this norm (or value) after unscaling.
        gradient_clip_algorithm: ``"norm"`` or ``"value"``.
        on_nonfinite: ``"raise"`` or ``"skip"`` on a non-finite loss.
        num_sample_images: images in the sample and reconstruction grids.
        optimizer: factory ``params -> Optimizer`` for the encoder and decoder; overrides ``lr``/``betas``.
        d_optimizer: the same for the discriminator; overrides ``lr_d``/``betas_d``.
        lr_scheduler: factory ``optimizer -> LRScheduler`` for the VAE's optimizer, stepped by the module
            per VAE update or per epoch (``lr_scheduler_interval``).
        d_lr_scheduler: the same for the discriminator's optimizer.
        lr_scheduler_interval: ``"epoch"`` or ``"step"`` (one step per VAE update, for both schedulers).
        compile: compile the networks in place with ``nn.Module.compile()`` (a dict passes keyword arguments).
        channels_last: channels-last memory format for the networks and batches.
        augment: differentiable augmentation of what the VAE-GAN's discriminator sees (data and
            reconstructions, and the reconstructions in the adversarial term; never the likelihood term):
            ``None``, ``"diffaugment[:ops]"`` or ``"ada[:groups]"``, as in ``GANModule``.
        ada_target: ADA's target for E[sign(D(real))].
        ada_speed_images: images over which ADA's ``p`` can move from 0 to 1.
        ada_interval: discriminator steps between ADA's adjustments.

    Example:
        >>> from lightning_gen import VAE
        >>> vae = VAE(image_size=16, channels=1, latent_dim=4, width=8)
        >>> vae.sample(3, seed=0).shape
        torch.Size([3, 1, 16, 16])
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 128,
        width: int = 32,
        likelihood: str = "gaussian",
        gaussian_sigma: float = 0.1,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        adversarial_weight: float = 0.0,
        adversarial_loss: str = "bce",
        lr_d: float = 2e-4,
        betas_d: tuple[float, float] = (0.5, 0.999),
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        on_nonfinite: str = "raise",
        num_sample_images: int = 64,
        optimizer: OptimizerCallable | None = None,
        d_optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        d_lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: str = "epoch",
        compile: bool | dict = False,
        channels_last: bool = False,
        augment: str | None = None,
        ada_target: float = 0.6,
        ada_speed_images: int = 500_000,
        ada_interval: int = 4,
    ):
        super().__init__()
        self._check_choice("likelihood", likelihood, LIKELIHOODS)
        self._check_choice("adversarial_loss", adversarial_loss, tuple(x for x in GAN_LOSSES if x != "wgan-gp"))
        validate_positive("num_sample_images", num_sample_images)
        for name, value in (("beta", beta), ("adversarial_weight", adversarial_weight), ("kl_warmup_steps", kl_warmup_steps)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        if not gaussian_sigma > 0:
            raise ValueError(f"gaussian_sigma must be > 0, got {gaussian_sigma!r}.")
        self._check_common_args(on_nonfinite, gradient_clip_val, gradient_clip_algorithm, lr_scheduler_interval)
        # Optimizer and scheduler factories are not hyper-parameters: pass them again to load_from_checkpoint.
        self.save_hyperparameters(ignore=["optimizer", "d_optimizer", "lr_scheduler", "d_lr_scheduler"])
        self._vae_optimizer, self._d_optimizer = optimizer, d_optimizer
        self._lr_scheduler, self._d_lr_scheduler = lr_scheduler, d_lr_scheduler

        self.encoder = ConvEncoder(image_size, channels, latent_dim, width)
        self.decoder = ConvDecoder(image_size, channels, latent_dim, width)
        self.discriminator = DCGANDiscriminator(image_size, channels, width) if adversarial_weight > 0 else None
        if augment is not None and self.discriminator is None:
            raise ValueError(f"augment={augment!r} acts on the discriminator's inputs; set adversarial_weight > 0 (VAE-GAN) to use it.")
        self.augment = build_augment(augment, ada_target=ada_target, ada_speed_images=ada_speed_images, ada_interval=ada_interval)
        grid_rng = torch.Generator().manual_seed(0)
        self.register_buffer("fixed_noise", torch.randn(num_sample_images, latent_dim, generator=grid_rng))
        self._val_images: Tensor | None = None

    # ----------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        vae_params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        optimizers = [self._optimizer(self._vae_optimizer, vae_params, hp.lr, hp.betas)]
        if self.discriminator is not None:
            optimizers.append(self._optimizer(self._d_optimizer, self.discriminator.parameters(), hp.lr_d, hp.betas_d))
        factories = [self._lr_scheduler, self._d_lr_scheduler][: len(optimizers)]
        return self._optimizers_and_schedulers(optimizers, factories, hp.lr_scheduler_interval)

    def ddp_networks(self) -> dict[str, nn.Module]:
        networks = {"encoder": self.encoder, "decoder": self.decoder}
        if self.discriminator is not None:
            networks["discriminator"] = self.discriminator
        return networks

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters ``(mu, logvar)`` for images in [-1, 1]."""
        return self.encoder(images)

    def decode(self, z: Tensor) -> Tensor:
        """Map latents to images in [-1, 1] (the likelihood's mean)."""
        raw = self.decoder(z).float()
        return torch.tanh(raw) if self.hparams.likelihood == "gaussian" else torch.sigmoid(raw) * 2 - 1

    def forward(self, images: Tensor) -> Tensor:
        """Reconstruct images (decoding the posterior mean)."""
        return self.decode(self.encode(images)[0])

    def elbo_terms(
        self, images: Tensor, generator: torch.Generator | None = None, encoder: nn.Module | None = None, decoder: nn.Module | None = None
    ) -> dict[str, Tensor]:
        """Reconstruction NLL, KL and the decoder's output for a batch, all per-image averages in nats.

        ``generator`` draws the reparameterization noise (training passes the module's own, seeded per
        epoch, and validation one seeded per validation run, so resumed runs draw the same noise and
        validation never touches the global RNG). ``encoder``/``decoder`` default to the module's own
        (training passes their DDP wrappers).
        """
        mu, logvar = (encoder or self.encoder)(images)
        mu, logvar = mu.float(), logvar.float()
        eps = torch.randn(mu.shape, device=mu.device, generator=generator)
        z = mu + eps * torch.exp(0.5 * logvar)  # reparameterization trick
        raw = (decoder or self.decoder)(z).float()
        target = images.float()
        if self.hparams.likelihood == "gaussian":
            sigma = self.hparams.gaussian_sigma
            mean = torch.tanh(raw)
            nll = 0.5 * ((target - mean) / sigma) ** 2 + math.log(sigma) + 0.5 * math.log(2 * math.pi)
            reconstruction = mean
        else:
            nll = F.binary_cross_entropy_with_logits(raw, (target + 1) / 2, reduction="none")
            reconstruction = torch.sigmoid(raw) * 2 - 1
        nll = nll.flatten(1).sum(dim=1).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
        return {"nll": nll, "kl": kl, "reconstruction": reconstruction}

    # ----------------------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> None:
        images, _ = self._prepare_batch(batch)
        optimizers = self._optimizers()
        opt_vae = optimizers[0]
        hp = self.hparams
        metrics = {}

        if self.discriminator is not None:
            opt_d = optimizers[1]
            discriminator = self._network("discriminator")
            recon = self._sampled_reconstruction(images)
            with self.toggled_optimizer(opt_d):
                real_logits = discriminator(self._augmented(images))
                d_loss = discriminator_loss(hp.adversarial_loss, real_logits, discriminator(self._augmented(recon)))
                self._update(opt_d, d_loss, "discriminator")
            if self.augment is not None:
                self.augment.update(real_logits.detach().flatten(), reduce=sum_across_processes)
                metrics["train/augment_p"] = self.augment.p
            metrics["train/d_loss"] = d_loss.detach()

        with self.toggled_optimizer(opt_vae):
            terms = self.elbo_terms(images, self._noise_generator(), self._network("encoder"), self._network("decoder"))
            beta_t = hp.beta * kl_warmup_factor(self.generator_step, hp.kl_warmup_steps)
            loss = terms["nll"] + beta_t * terms["kl"]
            if self.discriminator is not None:
                # The idle discriminator is called directly, not through its DDP wrapper.
                adversarial = generator_loss(hp.adversarial_loss, self.discriminator(self._augmented(terms["reconstruction"])))
                loss = loss + hp.adversarial_weight * adversarial
                metrics["train/g_loss"] = adversarial.detach()
            if self._update(opt_vae, loss, "VAE"):
                self.generator_step += 1
                self._step_lr_schedulers("step")
        if self._logs_this_batch():  # see GenerativeModule._logs_this_batch
            metrics.update(
                {
                    "train/loss": loss.detach(),
                    "train/reconstruction": terms["nll"].detach(),
                    "train/kl": terms["kl"].detach(),
                    "train/elbo": -(terms["nll"] + terms["kl"]).detach(),
                    "train/beta": float(beta_t),
                    "train/generator_step": float(self.generator_step),
                }
            )
            self.log_dict(metrics)
        self._log_progress_bar(loss.detach())

    @torch.no_grad()
    def _sampled_reconstruction(self, images: Tensor) -> Tensor:
        """A reconstruction decoded from z ~ q(z|x), like the one the adversarial term scores, without gradient."""
        return self.elbo_terms(images, self._noise_generator())["reconstruction"]

    def on_validation_epoch_start(self) -> None:
        # The same reparameterization noise every validation run: val/elbo is comparable across epochs,
        # and validation leaves the global RNG (and so the rest of training) untouched.
        self._eval_rng = torch.Generator(device=self.device).manual_seed(0)

    on_test_epoch_start = on_validation_epoch_start

    def _shared_eval_step(self, batch: Any, prefix: str) -> None:
        images, _ = self._prepare_batch(batch)
        rng = getattr(self, "_eval_rng", None)
        if rng is None:
            rng = self._eval_rng = torch.Generator(device=self.device).manual_seed(0)
        terms = self.elbo_terms(images, rng)
        self.log_dict(
            {
                f"{prefix}/reconstruction": terms["nll"],
                f"{prefix}/kl": terms["kl"],
                f"{prefix}/elbo": -(terms["nll"] + terms["kl"]),
            },
            sync_dist=True,
        )
        if self._val_images is None:
            self._val_images = images[: self.hparams.num_sample_images].detach()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_eval_step(batch, "test")

    def log_sample_grids(self) -> None:
        """Log samples from the prior (fixed noise) and, when validation ran, originals next to reconstructions."""
        try:
            with eval_mode(self), torch.no_grad():
                samples = self.decode(self.fixed_noise)
                log_image_grid(self.trainer, "samples", samples)
                if self._val_images is not None:
                    originals = self._val_images[:32]
                    pairs = torch.stack([originals.float(), self.forward(originals)], dim=1).flatten(0, 1)
                    log_image_grid(self.trainer, "reconstructions", pairs, nrow=8)  # original, reconstruction, ...
        finally:
            self._val_images = None

    def inference_networks(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    # ----------------------------------------------------------------------------------------------
    def _sample_batch(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Decode draws from the prior N(0, I) (``sample``, ``iter_samples`` and ``predict_step`` come from the base)."""
        with eval_mode(self), torch.no_grad():
            return self.decode(z)

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """Reconstruct images in [-1, 1] through the posterior mean (deterministic)."""
        with eval_mode(self):
            return self.forward(images.to(self.device)).clamp(-1, 1)

    @torch.no_grad()
    def interpolate(self, x1: Tensor, x2: Tensor, steps: int = 8) -> Tensor:
        """Decode ``steps`` points on the line between the posterior means of ``x1`` and ``x2``.

        Accepts single images (C, H, W) -> returns (steps, C, H, W), or batches (B, C, H, W) ->
        returns (B, steps, C, H, W). Both ends are included.
        """
        validate_positive("steps", steps)
        single = x1.ndim == 3
        x1, x2 = (x.unsqueeze(0) if single else x for x in (x1, x2))
        if x1.shape != x2.shape:
            raise ValueError(f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}.")
        with eval_mode(self):
            mu1, mu2 = self.encode(x1.to(self.device))[0], self.encode(x2.to(self.device))[0]
            weights = torch.linspace(0, 1, steps, device=self.device)[None, :, None]
            z = (1 - weights) * mu1[:, None] + weights * mu2[:, None]  # (B, steps, latent_dim)
            images = self.decode(z.flatten(0, 1)).unflatten(0, (x1.shape[0], steps))
        return images[0] if single else images
