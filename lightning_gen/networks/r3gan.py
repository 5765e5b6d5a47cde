"""R3GAN's generator and discriminator (Huang et al., NeurIPS 2024) as plain ``nn.Module`` s.

R3GAN is StyleGAN2 with the tricks taken out and the backbone modernised: every stage is a stack of
ResNeXt-style residual blocks (1x1 expand, grouped 3x3, 1x1 project) with leaky ReLU and a learned
bias, no normalisation of any kind, and a fix-up initialisation that makes every block an identity
map at the start (its last convolution is zero and the others are scaled down by the total number
of blocks). Resolution changes by 2x with a [1, 3, 3, 1] binomial low-pass filter around a 1x1
convolution instead of strided or transposed convolutions. The generator starts from a learned 4x4
basis modulated by the noise; the discriminator ends with a learned 4x4 depthwise basis. Class
conditioning is an embedding concatenated to the noise in G and a projection of the features onto a
class embedding in D. Facts and figures follow the authors' code (brownvc/R3GAN, ``R3GAN/Networks.py``
and the presets in ``train.py``); the code here is written from those facts.

What differs from the authors' code, and why:

* Image channels are an argument (1 or 3) rather than fixed at 3.
* Widths and blocks are given from 4x4 up to ``image_size`` for *both* networks, so one config
  describes a pair (the authors' presets list D's stages reversed).
* The grouped convolution is sized by its channels per group (``group_size``); the presets'
  cardinalities all work out to 16 channels per group, which is the default.
* No per-stage bf16 casts: run the networks under ``torch.autocast`` instead.
* The generator has no output non-linearity, as in the paper: its images are unbounded and the
  discriminator teaches them [-1, 1]. :meth:`lightning_gen.GANModule.sample` clamps to [-1, 1].

These networks import nothing from Lightning. The loss that the paper trains them with is in
:mod:`lightning_gen.losses_relativistic`, its hyper-parameter ramps in :mod:`lightning_gen.schedules`.

Example:
    >>> import torch
    >>> g = R3GANGenerator(image_size=16, channels=1, latent_dim=8, widths=16, group_size=8)
    >>> d = R3GANDiscriminator(image_size=16, channels=1, widths=16, group_size=8)
    >>> images = g(torch.randn(2, 8))
    >>> images.shape, d(images).shape
    (torch.Size([2, 1, 16, 16]), torch.Size([2]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gen.networks._layout import validate_image_size, validate_positive

__all__ = [
    "R3GAN_CONFIGS",
    "R3GANConfig",
    "R3GANDiscriminator",
    "R3GANGenerator",
    "R3GANNetworks",
    "create_r3gan",
    "r3gan_cifar32",
    "r3gan_cpu32",
]

_NEGATIVE_SLOPE = 0.2
# He gain of a leaky ReLU with slope 0.2: keeps activations at unit variance through a layer.
_LEAKY_RELU_GAIN = math.sqrt(2.0 / (1.0 + _NEGATIVE_SLOPE**2))
_LAYERS_PER_BLOCK = 3
# The authors write the filter as [1, 2, 1] and convolve it with [1, 1] before use: [1, 3, 3, 1].
BINOMIAL_FILTER = (1, 3, 3, 1)


def msr_init_(weight: Tensor, gain: float = 1.0) -> Tensor:
    """Fill ``weight`` from N(0, gain^2 / fan_in) in place (He init with an explicit gain) and return it.

    ``gain=0`` zeroes the weight: the fix-up init of a residual block's last layer.

    Example:
        >>> w = msr_init_(torch.empty(64, 32, 3, 3), gain=2.0)
        >>> round(w.std().item() * math.sqrt(32 * 9) / 2.0, 1)
        1.0
    """
    fan_in = weight[0].numel()  # in_channels / groups * kernel area, or in_features
    with torch.no_grad():
        return weight.normal_(0.0, gain / math.sqrt(fan_in))


def binomial_kernel(taps: Sequence[int] = BINOMIAL_FILTER) -> Tensor:
    """The separable 2D low-pass kernel ``outer(taps, taps)`` normalised to sum 1.

    Example:
        >>> (binomial_kernel() * 64).to(torch.int64).tolist()[0]
        [1, 3, 3, 1]
        >>> float(binomial_kernel().sum())
        1.0
    """
    row = torch.tensor([float(t) for t in taps])
    kernel = torch.outer(row, row)
    return kernel / kernel.sum()


# ------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------
class BiasedLeakyReLU(nn.Module):
    """A learned per-channel bias followed by leaky ReLU(0.2): the only place the networks hold a bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias.to(x.dtype)
        bias = bias.view(1, -1, 1, 1) if x.ndim == 4 else bias.view(1, -1)
        return F.leaky_relu(x + bias, _NEGATIVE_SLOPE)


class Resample2d(nn.Module):
    """Up- or downsample by 2 with a binomial filter, per channel (upfirdn2d as a depthwise convolution).

    Upsampling inserts zeros and filters (a transposed convolution with stride 2 and the kernel times
    4, so a constant image stays constant); downsampling filters and keeps every second pixel. With
    the 4-tap filter and padding 1 both map H to exactly 2H or H/2.

    Example:
        >>> up, down = Resample2d(2, "up"), Resample2d(2, "down")
        >>> x = torch.ones(1, 2, 4, 4)
        >>> up(x)[0, 0, 1:-1, 1:-1].unique().tolist(), down(up(x)).shape
        ([1.0], torch.Size([1, 2, 4, 4]))
    """

    def __init__(self, channels: int, direction: str, taps: Sequence[int] = BINOMIAL_FILTER):
        super().__init__()
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}.")
        if len(taps) != 4:
            raise ValueError(f"taps must have 4 entries (a 4-tap filter keeps sizes exact), got {tuple(taps)!r}.")
        self.channels, self.direction = channels, direction
        kernel = binomial_kernel(taps) * (4.0 if direction == "up" else 1.0)
        # Not persistent: a fixed function of the arguments, so it stays out of checkpoints and Hub exports.
        self.register_buffer("kernel", kernel.expand(channels, 1, 4, 4).contiguous(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        kernel = self.kernel.to(x.dtype)
        if self.direction == "up":
            return F.conv_transpose2d(x, kernel, stride=2, padding=1, groups=self.channels)
        return F.conv2d(x, kernel, stride=2, padding=1, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, direction={self.direction!r}"


def _conv(in_channels: int, out_channels: int, kernel_size: int = 1, groups: int = 1, gain: float = 1.0, padding: int | None = None) -> nn.Conv2d:
    padding = kernel_size // 2 if padding is None else padding  # "same" for the odd kernels
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, groups=groups, bias=False)
    msr_init_(conv.weight, gain)
    return conv


class ResidualBlock(nn.Module):
    """x + conv1x1(act(grouped conv3x3(act(conv1x1(x))))), identity at initialisation.

    Args:
        channels: input and output channels.
        expansion: the hidden layers have ``channels * expansion`` channels.
        group_size: channels per group of the 3x3 convolution (must divide the hidden width).
        num_blocks_total: blocks in the whole network (L). The fix-up init scales the first two
            layers by ``L ** (-1 / (2 * 3 - 2))`` so that the variance of the output stays bounded
            however deep the network once the blocks start to learn; the last layer starts at zero.
    """

    def __init__(self, channels: int, expansion: int, group_size: int, num_blocks_total: int):
        super().__init__()
        hidden = channels * expansion
        if hidden % group_size:
            raise ValueError(
                f"group_size={group_size} must divide the hidden width channels * expansion = {channels} * {expansion} = "
                f"{hidden}; pick a group_size that divides it (e.g. {math.gcd(hidden, group_size)})."
            )
        gain = _LEAKY_RELU_GAIN * num_blocks_total ** (-1.0 / (2 * _LAYERS_PER_BLOCK - 2))
        self.expand = _conv(channels, hidden, 1, gain=gain)
        self.act1 = BiasedLeakyReLU(hidden)
        self.conv = _conv(hidden, hidden, 3, groups=hidden // group_size, gain=gain)
        self.act2 = BiasedLeakyReLU(hidden)
        self.project = _conv(hidden, channels, 1, gain=0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.act2(self.conv(self.act1(self.expand(x)))))


class Upsample(nn.Module):
    """Change the width with a 1x1 convolution (when it changes), then upsample 2x: the cheap order."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = _conv(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        self.resample = Resample2d(out_channels, "up")

    def forward(self, x: Tensor) -> Tensor:
        return self.resample(self.linear(x))


class Downsample(nn.Module):
    """Downsample 2x, then change the width with a 1x1 convolution (when it changes): the cheap order."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.resample = Resample2d(in_channels, "down")
        self.linear = _conv(in_channels, out_channels) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.resample(x))


class GenerativeBasis(nn.Module):
    """A learned (C, 4, 4) basis, scaled per channel by a linear map of the input vector."""

    def __init__(self, in_features: int, channels: int):
        super().__init__()
        self.basis = nn.Parameter(torch.randn(channels, 4, 4))
        self.linear = nn.Linear(in_features, channels, bias=False)
        msr_init_(self.linear.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.basis.to(x.dtype).unsqueeze(0) * self.linear(x)[:, :, None, None]


class DiscriminativeBasis(nn.Module):
    """A learned 4x4 depthwise filter per channel (4x4 -> 1x1), then a linear map to ``out_features``."""

    def __init__(self, channels: int, out_features: int):
        super().__init__()
        self.basis = _conv(channels, channels, 4, groups=channels, padding=0)
        self.linear = nn.Linear(channels, out_features, bias=False)
        msr_init_(self.linear.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.basis(x).flatten(1))


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
def _per_stage(name: str, value: int | Sequence[int], num_stages: int, image_size: int) -> list[int]:
    values = [value] * num_stages if isinstance(value, int) else list(value)
    if len(values) != num_stages:
        raise ValueError(
            f"{name} needs one entry per resolution from 4x4 to {image_size}x{image_size} ({num_stages} entries), "
            f"got {len(values)}: {tuple(values)!r}. Pass a single integer to use it at every resolution."
        )
    for v in values:
        validate_positive(name, v)
    return values


def _num_stages(image_size: int) -> int:
    return validate_image_size(image_size).bit_length() - 2  # 4x4, 8x8, ..., image_size


class R3GANGenerator(nn.Module):
    """Maps a latent vector (and optionally a class label) to an image; no output non-linearity.

    Args:
        image_size: output height and width; a power of two from 16 to 256.
        channels: output image channels.
        latent_dim: size of the input noise vector (64 in every R3GAN preset).
        num_classes: when > 0, a learned embedding of the label is concatenated to the noise.
        widths: channels of each stage from 4x4 up to ``image_size`` (one integer: the same everywhere).
        blocks_per_stage: residual blocks per stage (an integer or one per stage).
        group_size: channels per group in the blocks' 3x3 convolutions (16 in every R3GAN preset).
        expansion: hidden width of a block over its input width (2 in every R3GAN preset).
        embedding_dim: size of the class embedding; ``None`` uses ``latent_dim`` (R3GAN's choice).
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        latent_dim: int = 64,
        num_classes: int = 0,
        widths: int | Sequence[int] = 128,
        blocks_per_stage: int | Sequence[int] = 1,
        group_size: int = 16,
        expansion: int = 2,
        embedding_dim: int | None = None,
    ):
        super().__init__()
        num_stages = _num_stages(image_size)
        widths = _per_stage("widths", widths, num_stages, image_size)
        blocks = _per_stage("blocks_per_stage", blocks_per_stage, num_stages, image_size)
        for name, value in (("channels", channels), ("latent_dim", latent_dim), ("group_size", group_size), ("expansion", expansion)):
            validate_positive(name, value)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes!r}.")
        embedding_dim = latent_dim if embedding_dim is None else validate_positive("embedding_dim", embedding_dim)
        self.image_size, self.channels, self.latent_dim, self.num_classes = image_size, channels, latent_dim, num_classes

        # A one-hot label through a bias-free linear layer, as the authors write it, is an embedding lookup.
        self.label_embedding = nn.Embedding(num_classes, embedding_dim) if num_classes else None
        if self.label_embedding is not None:
            msr_init_(self.label_embedding.weight.T)  # fan-in of the one-hot view: num_classes
        in_features = latent_dim + (embedding_dim if num_classes else 0)
        total_blocks = sum(blocks)
        stages = []
        for i, (width, count) in enumerate(zip(widths, blocks)):
            transition = GenerativeBasis(in_features, width) if i == 0 else Upsample(widths[i - 1], width)
            stages.append(nn.Sequential(transition, *(ResidualBlock(width, expansion, group_size, total_blocks) for _ in range(count))))
        self.stages = nn.Sequential(*stages)
        self.to_image = _conv(widths[-1], channels)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Generate images from ``z`` of shape (B, latent_dim) (or (B, latent_dim, 1, 1))."""
        z = z.flatten(1)
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError(f"This generator is class-conditional (num_classes={self.num_classes}); pass labels.")
            z = torch.cat([z, self.label_embedding(labels).to(z.dtype)], dim=1)
        return self.to_image(self.stages(z))


class R3GANDiscriminator(nn.Module):
    """Maps an image (and optionally a class label) to one real/fake logit per image.

    Args:
        image_size: input height and width; a power of two from 16 to 256.
        channels: input image channels.
        num_classes: when > 0, the last layer outputs ``embedding_dim`` features and the logit is their
            dot product with a learned embedding of the label (projection conditioning; the authors'
            D has no unconditional term then).
        widths: channels of each stage from 4x4 up to ``image_size``, the generator's order (the
            discriminator runs them from ``image_size`` down).
        blocks_per_stage: residual blocks per stage, same order.
        group_size: channels per group in the blocks' 3x3 convolutions.
        expansion: hidden width of a block over its input width.
        embedding_dim: size of the class projection; ``None`` uses the 4x4 stage's width (R3GAN's choice).
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        num_classes: int = 0,
        widths: int | Sequence[int] = 128,
        blocks_per_stage: int | Sequence[int] = 1,
        group_size: int = 16,
        expansion: int = 2,
        embedding_dim: int | None = None,
    ):
        super().__init__()
        num_stages = _num_stages(image_size)
        widths = _per_stage("widths", widths, num_stages, image_size)[::-1]  # image_size -> 4x4
        blocks = _per_stage("blocks_per_stage", blocks_per_stage, num_stages, image_size)[::-1]
        for name, value in (("channels", channels), ("group_size", group_size), ("expansion", expansion)):
            validate_positive(name, value)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes!r}.")
        embedding_dim = widths[-1] if embedding_dim is None else validate_positive("embedding_dim", embedding_dim)
        self.image_size, self.channels, self.num_classes = image_size, channels, num_classes

        self.from_image = _conv(channels, widths[0])
        total_blocks = sum(blocks)
        stages = []
        for i, (width, count) in enumerate(zip(widths, blocks)):
            last = i == num_stages - 1
            transition = DiscriminativeBasis(width, embedding_dim if num_classes else 1) if last else Downsample(width, widths[i + 1])
            stages.append(nn.Sequential(*(ResidualBlock(width, expansion, group_size, total_blocks) for _ in range(count)), transition))
        self.stages = nn.Sequential(*stages)
        self.label_projection = nn.Embedding(num_classes, embedding_dim) if num_classes else None
        if self.label_projection is not None:
            # The authors' gain of 1 / sqrt(embedding_dim) keeps the initial logits at about unit scale.
            msr_init_(self.label_projection.weight.T, gain=1.0 / math.sqrt(embedding_dim))

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Return logits of shape (B,)."""
        features = self.stages(self.from_image(images))
        if self.label_projection is None:
            return features.flatten()
        if labels is None:
            raise ValueError(f"This discriminator is class-conditional (num_classes={self.num_classes}); pass labels.")
        return (features * self.label_projection(labels).to(features.dtype)).sum(dim=1)


# ------------------------------------------------------------------------------------------------
# Configs and named variants
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class R3GANConfig:
    """The architecture of a generator/discriminator pair (both get the same widths and blocks)."""

    image_size: int  # resolution the config was designed for
    widths: tuple[int, ...]  # channels per stage, 4x4 first
    blocks_per_stage: tuple[int, ...]  # residual blocks per stage, 4x4 first
    latent_dim: int = 64  # every R3GAN preset
    group_size: int = 16  # channels per group: 1536 / 96 in the CIFAR-10 preset, the same in all presets
    expansion: int = 2  # every R3GAN preset
    note: str = ""  # where the numbers come from


R3GAN_CONFIGS: dict[str, R3GANConfig] = {
    # brownvc/R3GAN train.py, preset CIFAR10 (config E): 3/4 of 1024 channels and 2 blocks at each of the
    # four resolutions, cardinality 96; batch 512 on 8 GPUs, conditional. About 20M parameters per network.
    "cifar32": R3GANConfig(32, (768, 768, 768, 768), (2, 2, 2, 2), note="R3GAN paper, CIFAR-10 preset"),
    # Sized for a CPU: about 1/20 of the paper's width and one block per stage (~0.1M parameters per network).
    "cpu32": R3GANConfig(32, (64, 64, 32, 32), (1, 1, 1, 1), group_size=8, note="lightning-gen, CPU-sized"),
}


class R3GANNetworks(NamedTuple):
    """A generator and a discriminator built from one :class:`R3GANConfig`."""

    generator: R3GANGenerator
    discriminator: R3GANDiscriminator


def create_r3gan(config: str | R3GANConfig, channels: int = 3, num_classes: int = 0, **overrides: object) -> R3GANNetworks:
    """Build the generator and discriminator of ``config`` (a name in :data:`R3GAN_CONFIGS` or a config).

    ``overrides`` replace config fields (e.g. ``latent_dim=128``). At another ``image_size`` than the
    config's, widths and blocks not given keep the config's coarse stages: the finest ones are dropped
    for a smaller size, and the finest one is repeated for a larger size.

    Example:
        >>> g, d = create_r3gan("cpu32", channels=3, num_classes=10)
        >>> g(torch.randn(2, 64), torch.tensor([0, 9])).shape
        torch.Size([2, 3, 32, 32])
        >>> create_r3gan("cpu32", image_size=64).generator(torch.randn(1, 64)).shape
        torch.Size([1, 3, 64, 64])
    """
    if isinstance(config, str):
        if config not in R3GAN_CONFIGS:
            raise ValueError(f"config must be one of {sorted(R3GAN_CONFIGS)} or an R3GANConfig, got {config!r}.")
        config = R3GAN_CONFIGS[config]
    unknown = set(overrides) - set(asdict(config))
    if unknown:
        raise ValueError(f"Unknown R3GANConfig fields {sorted(unknown)}; valid ones: {sorted(asdict(config))}.")
    fields = {**asdict(config), **overrides}
    fields.pop("note")
    num_stages = _num_stages(fields["image_size"])
    for name in ("widths", "blocks_per_stage"):
        if name not in overrides:  # another size: drop the finest stages, or repeat the finest one
            values = list(fields[name])
            fields[name] = tuple((values + [values[-1]] * num_stages)[:num_stages])
    shared = {k: fields[k] for k in ("image_size", "widths", "blocks_per_stage", "group_size", "expansion")}
    generator = R3GANGenerator(channels=channels, latent_dim=fields["latent_dim"], num_classes=num_classes, **shared)
    discriminator = R3GANDiscriminator(channels=channels, num_classes=num_classes, **shared)
    return R3GANNetworks(generator, discriminator)


def r3gan_cifar32(channels: int = 3, num_classes: int = 0) -> R3GANNetworks:
    """The paper's CIFAR-10 networks (32x32; pass ``num_classes=10`` for the class-conditional model it reports)."""
    return create_r3gan("cifar32", channels=channels, num_classes=num_classes)


def r3gan_cpu32(channels: int = 3, num_classes: int = 0) -> R3GANNetworks:
    """A CPU-sized pair at 32x32 with the paper's design (widths 64-32, one block per stage)."""
    return create_r3gan("cpu32", channels=channels, num_classes=num_classes)
