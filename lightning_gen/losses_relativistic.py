"""The regularised relativistic GAN objective of R3GAN (Huang et al., NeurIPS 2024).

RpGAN (Jolicoeur-Martineau, 2019) compares each real image with a generated one instead of judging
each alone: the discriminator minimises ``softplus(-(D(x) - D(G(z))))`` and the generator the mirror
image ``softplus(-(D(G(z)) - D(x)))``, pair by pair (the i-th real with the i-th generated image).
Alone it does not converge; with *both* zero-centred gradient penalties, R1 on real images and R2 on
generated ones, each added to D's loss as ``gamma / 2 * E[||grad_x D(x)||^2]``, the paper proves
local convergence, and on Stacked MNIST it finds every mode where either penalty alone diverged.

House conventions (see :mod:`lightning_gen.losses`): logits are promoted to float32 before the
softplus and the mean, and the penalties are differentiated in float32 with autocast disabled
(float64 inputs stay float64, so the functions can be checked against finite differences).
The penalties are taken with respect to the images before any augmentation (the discriminator's
forward may augment them; the gradient flows back through the augmentation), as in ADA and R3GAN.

Kept apart from :mod:`lightning_gen.losses` until ``GANModule(loss="rpgan")`` is wired in.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "gradient_penalty_from_logits",
    "r1_r2_penalties",
    "rpgan_discriminator_loss",
    "rpgan_generator_loss",
    "zero_centred_gradient_penalty",
]

DiscriminatorFn = Callable[[Tensor], Tensor]


def _at_least_float32(tensor: Tensor) -> Tensor:
    # float32 for half-precision inputs; float64 stays float64 (what finite-difference checks need).
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _check_pairs(real_logits: Tensor, fake_logits: Tensor) -> None:
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            "RpGAN pairs the i-th real image with the i-th generated one, so real and generated logits need the same "
            f"shape; got {tuple(real_logits.shape)} and {tuple(fake_logits.shape)}. Generate as many images as the real batch holds."
        )


def rpgan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """D's relativistic pairing loss: mean of ``softplus(-(D(x) - D(G(z))))`` (lower is better for D).

    Example:
        >>> import math, torch
        >>> real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
        >>> loss = rpgan_discriminator_loss(real, fake)   # (softplus(-2) + softplus(0)) / 2
        >>> math.isclose(loss.item(), (math.log1p(math.exp(-2)) + math.log(2)) / 2, rel_tol=1e-6)
        True
    """
    _check_pairs(real_logits, fake_logits)
    return F.softplus(_at_least_float32(fake_logits) - _at_least_float32(real_logits)).mean()


def rpgan_generator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """G's relativistic pairing loss: mean of ``softplus(-(D(G(z)) - D(x)))``.

    The real logits matter to G only as the reference each generated image is compared with; pass
    them detached (no gradient reaches D from G's step).

    Example:
        >>> import math, torch
        >>> loss = rpgan_generator_loss(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 4.0]))  # a tie and a win for G
        >>> math.isclose(loss.item(), (math.log(2) + math.log1p(math.exp(-1))) / 2, rel_tol=1e-6)  # float32
        True
    """
    _check_pairs(real_logits, fake_logits)
    return F.softplus(_at_least_float32(real_logits) - _at_least_float32(fake_logits)).mean()


def gradient_penalty_from_logits(logits: Tensor, inputs: Tensor) -> Tensor:
    """Mean over the batch of the per-sample ``||d logits_i / d inputs_i||^2``, differentiable (double backward).

    ``inputs`` must require grad and ``logits`` come from a forward on them. The sum over the batch
    is differentiated at once, which gives each sample's own gradient because each logit depends on
    its own image only (true of the norm-free R3GAN discriminator and of DCGAN's with ``norm="layer"``
    or ``"none"``; not of BatchNorm in training mode). R1 when ``inputs`` are real images, R2 when
    they are generated ones.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        >>> logits = (x**2).sum(dim=1)                    # grad = 2x: ||.||^2 = 4 * (1 + 4), 4 * (9 + 16)
        >>> gradient_penalty_from_logits(logits, x).item()  # (20 + 100) / 2
        60.0
    """
    if not inputs.requires_grad:
        raise ValueError("inputs must require grad (call inputs.requires_grad_(True) before the discriminator's forward).")
    (grads,) = torch.autograd.grad(_at_least_float32(logits).sum(), inputs, create_graph=True)
    return _at_least_float32(grads).flatten(1).pow(2).sum(dim=1).mean()


def zero_centred_gradient_penalty(discriminator: DiscriminatorFn, images: Tensor) -> Tensor:
    """E[||grad_x D(x)||^2] at ``images`` with a float32 forward of its own, autocast disabled.

    The images are detached and promoted to float32 first, so the penalty never reaches the network that
    made them. Multiply by ``gamma / 2``. Use :func:`gradient_penalty_from_logits` instead when a
    float32 forward on inputs that require grad already exists.

    Example:
        >>> import torch
        >>> w = torch.tensor([[3.0], [4.0]])
        >>> zero_centred_gradient_penalty(lambda x: (x @ w).flatten(), torch.randn(5, 2)).item()  # ||w||^2
        25.0
    """
    images = _at_least_float32(images.detach()).requires_grad_(True)
    with torch.autocast(device_type=images.device.type, enabled=False):
        return gradient_penalty_from_logits(discriminator(images), images)


def r1_r2_penalties(discriminator: DiscriminatorFn, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """R1 on ``real`` and R2 on ``fake`` (each a per-sample squared gradient norm averaged over the batch).

    One float32 forward of the discriminator on the real and generated images together (reals first),
    autocast off; a class-conditional ``discriminator`` callable must therefore take the labels twice,
    ``lambda x: d(x, torch.cat([labels, labels]))``. D's loss adds ``gamma / 2 * (r1 + r2)``.

    Example:
        >>> import torch
        >>> d = lambda x: 2 * x.flatten(1).sum(dim=1)
        >>> r1, r2 = r1_r2_penalties(d, torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2))
        >>> r1.item(), r2.item()      # 4 pixels, each with gradient 2: 4 * 2^2
        (16.0, 16.0)
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake images must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}.")
    images = _at_least_float32(torch.cat([real.detach(), fake.detach()])).requires_grad_(True)
    with torch.autocast(device_type=images.device.type, enabled=False):
        logits = _at_least_float32(discriminator(images))
        (grads,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    per_sample = grads.flatten(1).pow(2).sum(dim=1)
    r1, r2 = per_sample.split(real.shape[0])
    return r1.mean(), r2.mean()
