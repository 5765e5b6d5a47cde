"""DCGAN generator and discriminator (Radford et al., 2016) as plain ``nn.Module`` s.

The recipe follows the paper: transposed-convolution generator with BatchNorm and ReLU, strided-conv
discriminator with LeakyReLU(0.2), no pooling or fully connected hidden layers, Tanh output, and all
weights drawn from N(0, 0.02). Sizes generalise the paper's 64x64 layout to any power of two from 16
to 256 by adding or removing one 2x stage per octave.

These networks import nothing from Lightning, so a trained generator can be exported, pushed to the
Hub and sampled without a Trainer. Training logic lives in :mod:`lightning_gen.gan`.

Example:
    >>> import torch
    >>> g = DCGANGenerator(image_size=32, channels=3, latent_dim=16, width=8)
    >>> d = DCGANDiscriminator(image_size=32, channels=3, width=8)
    >>> images = g(torch.randn(2, 16))
    >>> images.shape, d(images).shape
    (torch.Size([2, 3, 32, 32]), torch.Size([2]))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from lightning_gen.networks._layout import feature_widths, validate_image_size, validate_positive

DISCRIMINATOR_NORMS = ("batch", "layer", "none")


def dcgan_init_(module: nn.Module) -> None:
    """Initialise weights as in the DCGAN paper: N(0, 0.02) for convolutions, N(1, 0.02) for norms."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """Maps a latent vector (and optionally a class label) to an image in [-1, 1].

    Args:
        image_size: output height and width; a power of two from 16 to 256.
        channels: output image channels (1 for grayscale, 3 for RGB, any count works).
        latent_dim: size of the input noise vector.
        width: feature maps of the last hidden layer ("ngf" in the paper); earlier layers use
            multiples of it (up to 8x).
        num_classes: when > 0, the generator is class-conditional: a learned embedding of the label
            is concatenated to the noise.
    """

    def __init__(self, image_size: int = 64, channels: int = 3, latent_dim: int = 100, width: int = 64, num_classes: int = 0):
        super().__init__()
        validate_image_size(image_size)
        validate_positive("channels", channels)
        validate_positive("latent_dim", latent_dim)
        validate_positive("width", width)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes!r}.")
        self.image_size, self.channels, self.latent_dim, self.num_classes = image_size, channels, latent_dim, num_classes

        self.label_embedding = nn.Embedding(num_classes, latent_dim) if num_classes else None
        in_features = latent_dim * (2 if num_classes else 1)
        widths = feature_widths(image_size, width)
        # Bias is redundant in front of BatchNorm, as in the paper's reference code.
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_features, widths[0], 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Generate images from ``z`` of shape (B, latent_dim) (or (B, latent_dim, 1, 1))."""
        z = z.flatten(1)
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError(f"This generator is class-conditional (num_classes={self.num_classes}); pass labels.")
            z = torch.cat([z, self.label_embedding(labels)], dim=1)
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """Maps an image (and optionally a class label) to one real/fake logit per image.

    Args:
        image_size: input height and width; a power of two from 16 to 256.
        channels: input image channels.
        width: feature maps of the first layer ("ndf" in the paper); later layers use multiples.
        num_classes: when > 0, class-conditional through a projection term (Miyato & Koyama, 2018):
            the logit gains ``<embed(label), pooled features>``.
        norm: normalisation after each hidden convolution but the first: ``"batch"`` (the paper),
            ``"layer"`` (per-sample; use it with gradient penalties, which assume each sample's output
            depends on that sample alone) or ``"none"``.
        spectral_norm: wrap every convolution (and the projection embedding) in spectral normalisation.
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        width: int = 64,
        num_classes: int = 0,
        norm: str = "batch",
        spectral_norm: bool = False,
    ):
        super().__init__()
        validate_image_size(image_size)
        validate_positive("channels", channels)
        validate_positive("width", width)
        if norm not in DISCRIMINATOR_NORMS:
            raise ValueError(f"norm must be one of {DISCRIMINATOR_NORMS}, got {norm!r}.")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes!r}.")
        self.image_size, self.channels, self.num_classes = image_size, channels, num_classes

        widths = feature_widths(image_size, width)[::-1]  # image_size/2 -> 4x4
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=norm == "none"), _norm(norm, w_out), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, 4, 1, 0)  # 4x4 -> 1x1
        self.label_projection = nn.Embedding(num_classes, widths[-1]) if num_classes else None
        dcgan_init_(self)
        if spectral_norm:
            # After the init: once parametrized, ``weight`` is recomputed from ``weight.original`` on every
            # access, so an init written into it would be lost and the layers would keep PyTorch's defaults.
            for layer in [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Embedding))]:
                _spectral_norm(layer)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Return logits of shape (B,)."""
        h = self.features(images)
        logits = self.head(h).flatten()
        if self.label_projection is not None:
            if labels is None:
                raise ValueError(f"This discriminator is class-conditional (num_classes={self.num_classes}); pass labels.")
            logits = logits + (self.label_projection(labels) * h.sum(dim=(2, 3))).sum(dim=1)
        return logits


def _norm(kind: str, num_features: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(num_features)
    if kind == "layer":
        # GroupNorm with one group normalises over (C, H, W) per sample: LayerNorm for feature maps.
        return nn.GroupNorm(1, num_features)
    return nn.Identity()
