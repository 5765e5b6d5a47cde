"""GAN objectives and gradient penalties.

Each loss takes discriminator logits and returns a scalar. Logits are promoted to float32 first:
under ``bf16-mixed`` or ``16-mixed`` the discriminator's output is half precision, and softplus / mean
over a batch in half precision loses enough bits to bias the loss.

The penalties differentiate the discriminator with respect to its *input* and then backpropagate
through that gradient (double backward). They run with autocast disabled: in fp16 the squared input
gradients underflow or overflow long before the GradScaler can help (the scaler only scales the
final loss, not an intermediate ``autograd.grad``), and in bf16 their 8-bit mantissa makes the
``(||grad|| - 1)^2`` term noise.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

GAN_LOSSES = ("bce", "hinge", "wgan-gp")

DiscriminatorFn = Callable[[Tensor], Tensor]


def discriminator_loss(loss: str, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator objective for ``loss`` in :data:`GAN_LOSSES` (lower is better for D).

    Example:
        >>> import torch
        >>> real, fake = torch.tensor([10.0]), torch.tensor([-10.0])   # a confident, correct D
        >>> round(discriminator_loss("bce", real, fake).item(), 4)
        0.0001
    """
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if loss == "bce":
        # -log sigmoid(real) - log(1 - sigmoid(fake)), written with softplus for stability.
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if loss == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    if loss == "wgan-gp":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"loss must be one of {GAN_LOSSES}, got {loss!r}.")


def generator_loss(loss: str, fake_logits: Tensor) -> Tensor:
    """Generator objective for ``loss`` in :data:`GAN_LOSSES`.

    ``"bce"`` is the non-saturating form, -log D(G(z)), which keeps gradients alive early in training
    when D rejects every sample (the minimax form log(1 - D(G(z))) saturates there).
    """
    fake_logits = fake_logits.float()
    if loss == "bce":
        return F.softplus(-fake_logits).mean()
    if loss in ("hinge", "wgan-gp"):
        return -fake_logits.mean()
    raise ValueError(f"loss must be one of {GAN_LOSSES}, got {loss!r}.")


def gradient_penalty(discriminator: DiscriminatorFn, real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP penalty (Gulrajani et al., 2017): E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates.

    Computed in float32 with autocast disabled (see the module docstring for why).
    """
    real, fake = real.detach().float(), fake.detach().float()
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator)
    interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        outputs = discriminator(interpolates).float()
        (grads,) = torch.autograd.grad(outputs.sum(), interpolates, create_graph=True)
    return ((grads.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(discriminator: DiscriminatorFn, real: Tensor) -> Tensor:
    """R1 penalty (Mescheder et al., 2018): E[||grad_x D(x)||^2] on real data, in float32 without autocast.

    Multiply by ``gamma / 2`` to match the paper's weighting. This runs a forward of its own; when the
    real logits already come from a forward on inputs that require grad (and no autocast), use
    :func:`r1_penalty_from_logits` and save that forward.
    """
    real = real.detach().float().requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        return r1_penalty_from_logits(discriminator(real), real)


def r1_penalty_from_logits(real_logits: Tensor, real: Tensor) -> Tensor:
    """R1 penalty from logits already computed on ``real`` (a tensor with ``requires_grad=True``).

    Example:
        >>> import torch
        >>> x = torch.ones(2, 3, requires_grad=True)
        >>> r1_penalty_from_logits((2 * x).sum(dim=1), x).item()     # ||grad||^2 = 3 * 2^2
        12.0
    """
    (grads,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
    return grads.flatten(1).pow(2).sum(dim=1).mean()
