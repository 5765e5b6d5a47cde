"""Networks tried for the main job beside the library's DCGAN (``shapes_recipe_tries.py --generator/--discriminator``).

Not part of the library: they were tried for issue 12 and learnt no faster per batch than the DCGAN at 3-5 times its
cost (``benchmarks/RESULTS.md``, "Other architectures"). Both are plain ``nn.Module`` s for 32x32 RGB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class UpsampleGenerator(nn.Module):
    """Latent -> 4x4 by a linear layer, then three stages of nearest 2x upsampling and two 3x3 convolutions with
    BatchNorm and ReLU (no transposed convolutions, so no checkerboard), then a 3x3 convolution to RGB and tanh."""

    def __init__(self, latent_dim: int = 64, width: int = 32, channels: int = 3) -> None:
        super().__init__()
        widths = [4 * width, 2 * width, width]
        self.first_width = widths[0]
        self.project = nn.Linear(latent_dim, widths[0] * 16)
        self.project_norm = nn.BatchNorm2d(widths[0])
        layers: list[nn.Module] = []
        w_in = widths[0]
        for w_out in widths:
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(w_in, w_out, 3, 1, 1, bias=False), nn.BatchNorm2d(w_out),
                       nn.ReLU(inplace=True), nn.Conv2d(w_out, w_out, 3, 1, 1, bias=False), nn.BatchNorm2d(w_out),
                       nn.ReLU(inplace=True)]  # fmt: skip
            w_in = w_out
        self.stages = nn.Sequential(*layers)
        self.to_rgb = nn.Conv2d(w_in, channels, 3, 1, 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(z.flatten(1)).view(-1, self.first_width, 4, 4)
        return torch.tanh(self.to_rgb(self.stages(F.relu(self.project_norm(h)))))


class MinibatchStdDiscriminator(nn.Module):
    """StyleGAN-like, norm-free (for R1): a 3x3 convolution at full resolution, three stages of 3x3 + strided 4x4
    convolutions down to 4x4, the minibatch standard deviation as an extra channel, then two linear layers."""

    def __init__(self, width: int = 32, channels: int = 3, group_size: int = 4) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        w_in = widths[0]
        for w_out in widths:
            layers += [nn.Conv2d(w_in, w_out, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                       nn.Conv2d(w_out, w_out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]  # fmt: skip
            w_in = w_out
        self.features = nn.Sequential(*layers)
        self.group_size = group_size
        self.last_conv = nn.Conv2d(w_in + 1, w_in, 3, 1, 1)
        self.hidden = nn.Linear(w_in * 16, w_in)
        self.head = nn.Linear(w_in, 1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(images)
        group = min(self.group_size, h.shape[0])  # the batch must be a multiple of it
        grouped = h.view(group, -1, *h.shape[1:])
        spread = (grouped.var(0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))
        spread = spread.repeat(group)[:, None, None, None].expand(-1, 1, *h.shape[2:])
        h = F.leaky_relu(self.last_conv(torch.cat([h, spread], 1)), 0.2)
        return self.head(F.leaky_relu(self.hidden(h.flatten(1)), 0.2)).flatten()
