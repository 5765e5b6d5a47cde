"""lightning-gen: generative image models (GAN, VAE) for PyTorch Lightning, with FID/IS/KID and a Hub zoo.

The public names below are imported on first use (PEP 562), so ``import lightning_gen`` and the
command line (``lightning-gen --help``, ``lightning-gen zoo list``) do not pay for torch and Lightning
until a model, a network or a data module is asked for. ``from lightning_gen import GANModule`` works as usual.

Example:
    >>> import lightning as L
    >>> from lightning_gen import GANModule
    >>> model = GANModule(image_size=16, channels=1, latent_dim=8, width=8)
    >>> tuple(model.sample(2, seed=0).shape)
    (2, 1, 16, 16)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lightning_gen._version import __version__

# Public name -> the module that defines it.
_LAZY_EXPORTS = {
    "ConvDecoder": "lightning_gen.networks",
    "ConvEncoder": "lightning_gen.networks",
    "DCGANDiscriminator": "lightning_gen.networks",
    "DCGANGenerator": "lightning_gen.networks",
    "DigitsDataModule": "lightning_gen.data",
    "GANModule": "lightning_gen.gan",
    "ImageFolderDataModule": "lightning_gen.data",
    "MultiModelDDPStrategy": "lightning_gen.strategies",
    "ProjectionResult": "lightning_gen.projection",
    "ShapesDataModule": "lightning_gen.data",
    "VAE": "lightning_gen.vae",
    "project": "lightning_gen.projection",
}

__all__ = [*sorted(_LAZY_EXPORTS), "__version__"]

if TYPE_CHECKING:  # static analysers and IDEs see the real imports
    from lightning_gen.data import DigitsDataModule, ImageFolderDataModule, ShapesDataModule
    from lightning_gen.gan import GANModule
    from lightning_gen.networks import ConvDecoder, ConvEncoder, DCGANDiscriminator, DCGANGenerator
    from lightning_gen.projection import ProjectionResult, project
    from lightning_gen.strategies import MultiModelDDPStrategy
    from lightning_gen.vae import VAE


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lightning_gen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))
