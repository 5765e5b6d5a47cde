"""Plain ``nn.Module`` networks, free of Lightning, usable without a Trainer."""

from lightning_gen.networks.conv_vae import ConvDecoder, ConvEncoder
from lightning_gen.networks.dcgan import DCGANDiscriminator, DCGANGenerator

__all__ = ["ConvDecoder", "ConvEncoder", "DCGANDiscriminator", "DCGANGenerator"]
