"""lightning-gen: generative image models (GAN, VAE) for PyTorch Lightning, with FID/IS/KID and a Hub zoo.

Example:
    >>> import lightning as L
    >>> from lightning_gen import GANModule
    >>> model = GANModule(image_size=16, channels=1, latent_dim=8, width=8)
    >>> tuple(model.sample(2, seed=0).shape)
    (2, 1, 16, 16)
"""

__version__ = "0.1.0.dev0"

from lightning_gen.data import ImageFolderDataModule, ShapesDataModule
from lightning_gen.gan import GANModule
from lightning_gen.networks import ConvDecoder, ConvEncoder, DCGANDiscriminator, DCGANGenerator
from lightning_gen.projection import ProjectionResult, project
from lightning_gen.strategies import MultiModelDDPStrategy
from lightning_gen.vae import VAE

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GANModule",
    "ImageFolderDataModule",
    "MultiModelDDPStrategy",
    "ProjectionResult",
    "ShapesDataModule",
    "VAE",
    "__version__",
    "project",
]
