"""Convolutional encoder and decoder for the VAE, as plain ``nn.Module`` s.

The layouts mirror the DCGAN discriminator (encoder) and generator (decoder) of the same
``image_size`` and ``width``, so one mental model covers both families. The decoder returns raw
outputs (no final activation): the likelihood in :mod:`lightning_gen.vae` decides whether they are a
Gaussian mean (squashed with tanh) or Bernoulli logits.

Example:
    >>> import torch
    >>> enc, dec = ConvEncoder(32, 3, latent_dim=8, width=8), ConvDecoder(32, 3, latent_dim=8, width=8)
    >>> mu, logvar = enc(torch.randn(2, 3, 32, 32))
    >>> mu.shape, dec(mu).shape
    (torch.Size([2, 8]), torch.Size([2, 3, 32, 32]))
"""

from __future__ import annotations

from torch import Tensor, nn

from lightning_gen.networks._layout import feature_widths, validate_image_size, validate_positive
from lightning_gen.networks.dcgan import dcgan_init_


class ConvEncoder(nn.Module):
    """Maps images to the mean and log-variance of a diagonal Gaussian posterior q(z | x).

    Args:
        image_size: input height and width; a power of two from 16 to 256.
        channels: input image channels.
        latent_dim: size of z.
        width: feature maps of the first convolution; later layers use multiples (up to 8x).
    """

    def __init__(self, image_size: int = 64, channels: int = 3, latent_dim: int = 128, width: int = 32):
        super().__init__()
        _validate(image_size, channels, latent_dim, width)
        widths = feature_widths(image_size, width)[::-1]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.to_moments = nn.Linear(widths[-1] * 16, 2 * latent_dim)
        dcgan_init_(self)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(mu, logvar)``, each of shape (B, latent_dim)."""
        mu, logvar = self.to_moments(self.features(images)).chunk(2, dim=1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """Maps a latent vector to raw image-shaped outputs (Gaussian means before tanh, or Bernoulli logits).

    Args:
        image_size: output height and width; a power of two from 16 to 256.
        channels: output image channels.
        latent_dim: size of z.
        width: feature maps of the last hidden layer; earlier layers use multiples (up to 8x).
    """

    def __init__(self, image_size: int = 64, channels: int = 3, latent_dim: int = 128, width: int = 32):
        super().__init__()
        _validate(image_size, channels, latent_dim, width)
        widths = feature_widths(image_size, width)
        self.from_latent = nn.Linear(latent_dim, widths[0] * 16)
        self._first_width = widths[0]
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: Tensor) -> Tensor:
        """Return raw outputs of shape (B, channels, image_size, image_size)."""
        return self.net(self.from_latent(z).view(-1, self._first_width, 4, 4))


def _validate(image_size: int, channels: int, latent_dim: int, width: int) -> None:
    validate_image_size(image_size)
    for name, value in (("channels", channels), ("latent_dim", latent_dim), ("width", width)):
        validate_positive(name, value)
