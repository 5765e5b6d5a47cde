"""Latent-space helpers: the truncation trick, interpolation and walks, label morphing.

What this module is for: the tensor arithmetic behind ``sample(..., truncation=psi)``,
``GANModule.interpolate`` / ``GANModule.walk`` and ``lightning-gen sample --walk``. Everything here works on
plain tensors and ``nn.Module`` s (no Lightning), so it applies to any generator. What it is not: a sampler
(the modules draw their latents on the CPU from a seeded generator and call :func:`truncated_normal`).

**Truncation, one number for every generator.** ``psi`` in (0, 1]; ``psi = 1`` is plain sampling (bit for bit)
and smaller values trade diversity for fidelity.

* Gaussian latents (DCGAN, the VAE's prior): BigGAN's truncation trick (Brock et al. 2019, section 3.1),
  which redraws every latent component whose magnitude exceeds a threshold ``t`` until none does. ``psi`` is the
  share of each component's N(0, 1) mass that is kept: ``t = sqrt(2) * erfinv(psi)``, so ``psi = 1`` keeps
  everything (``t`` infinite, nothing redrawn) and ``psi = 0.683`` / ``0.954`` are BigGAN's thresholds 1 and 2
  (:func:`truncation_threshold`, and :func:`truncation_psi` for the way back).
* Generators with a mapping network (the :class:`MappingNetwork` protocol: ``mapping``, ``synthesis``,
  ``w_avg``): StyleGAN's form ``w_avg + psi * (w - w_avg)`` (Karras et al. 2019), the same ``psi`` that
  StyleGAN users know.

Example:
    >>> import torch
    >>> round(truncation_threshold(0.954), 2)
    2.0
    >>> z = truncated_normal((1000, 8), truncation_threshold(0.5), torch.Generator().manual_seed(0))
    >>> bool(z.abs().max() <= truncation_threshold(0.5))
    True
    >>> plain = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    >>> torch.equal(truncated_normal((4, 8), truncation_threshold(1.0), torch.Generator().manual_seed(0)), plain)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

INTERPOLATION_METHODS = ("slerp", "lerp")


# --------------------------------------------------------------------------------------------------
# Truncation.
def check_truncation(psi: float | None) -> float | None:
    """Validate a truncation ``psi``: None (no truncation) or a number in (0, 1].

    Example:
        >>> check_truncation(0.7), check_truncation(None)
        (0.7, None)
    """
    if psi is None:
        return None
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not 0.0 < float(psi) <= 1.0:
        raise ValueError(
            f"truncation must be a number in (0, 1] (1 = no truncation, smaller = less diverse, closer to typical "
            f"images) or None, got {psi!r}."
        )
    return float(psi)


def truncation_threshold(psi: float) -> float:
    """The BigGAN threshold ``t`` for ``psi``: the central share ``psi`` of N(0, 1) lies in [-t, t].

    Example:
        >>> truncation_threshold(1.0)
        inf
        >>> round(truncation_threshold(0.6827), 3)
        1.0
    """
    psi = check_truncation(psi)
    if psi == 1.0:
        return math.inf
    return math.sqrt(2.0) * torch.erfinv(torch.tensor(psi, dtype=torch.float64)).item()


def truncation_psi(threshold: float) -> float:
    """The ``psi`` that gives BigGAN threshold ``threshold`` (the inverse of :func:`truncation_threshold`).

    Example:
        >>> round(truncation_psi(2.0), 4)
        0.9545
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0 (in standard deviations), got {threshold!r}.")
    return 1.0 if math.isinf(threshold) else math.erf(threshold / math.sqrt(2.0))


def truncated_normal(shape: tuple[int, ...], threshold: float, generator: torch.Generator | None = None) -> Tensor:
    """N(0, 1) draws with every component of magnitude above ``threshold`` redrawn until none is (BigGAN).

    The first draw is ``torch.randn(shape, generator=generator)`` and the redraws continue the same generator,
    so a seeded generator gives the same result every time and ``threshold=inf`` returns exactly that first draw.
    Drawn on the CPU (the generator's device); move the result where it is needed.

    Args:
        shape: shape of the result, e.g. ``(n, latent_dim)``.
        threshold: the largest magnitude kept, in standard deviations (> 0; ``math.inf`` keeps everything).
        generator: the random source; None uses torch's global one.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0 (in standard deviations), got {threshold!r}.")
    z = torch.randn(shape, generator=generator)
    if math.isinf(threshold):
        return z
    outside = z.abs() > threshold
    count = int(outside.sum())
    while count:  # each round redraws only the rejected components; acceptance is psi per component
        redrawn = torch.randn(count, generator=generator)
        z[outside] = redrawn
        outside = z.abs() > threshold
        count = int(outside.sum())
    return z


@runtime_checkable
class MappingNetwork(Protocol):
    """A generator with a mapping network, truncated in its intermediate latent space (StyleGAN's form).

    A generator implements it by having these three members (``forward(z, labels)`` must equal
    ``synthesis(mapping(z, labels))``, so that ``psi = 1`` is plain sampling):

    * ``mapping(z, labels=None) -> w``: the mapping network (labels are None for an unconditional model);
    * ``synthesis(w) -> images``: the rest of the generator;
    * ``w_avg``: the running mean of ``w`` (a buffer), the point truncation moves toward.
    """

    w_avg: Tensor

    def mapping(self, z: Tensor, labels: Tensor | None = None) -> Tensor: ...

    def synthesis(self, w: Tensor) -> Tensor: ...


def truncate_toward_mean(w: Tensor, w_avg: Tensor, psi: float) -> Tensor:
    """StyleGAN's truncation: ``w_avg + psi * (w - w_avg)`` (``w`` unchanged, same object, at ``psi = 1``).

    Example:
        >>> truncate_toward_mean(torch.tensor([2.0, 4.0]), torch.tensor([0.0, 2.0]), 0.5).tolist()
        [1.0, 3.0]
    """
    psi = check_truncation(psi)
    return w if psi == 1.0 else torch.lerp(w_avg.to(w.dtype), w, psi)


def sample_mapped(generator: nn.Module, z: Tensor, labels: Tensor | None, psi: float) -> Tensor:
    """Images of a :class:`MappingNetwork` generator for latents ``z`` with StyleGAN's truncation ``psi``."""
    return generator.synthesis(truncate_toward_mean(generator.mapping(z, labels), generator.w_avg, psi))


# --------------------------------------------------------------------------------------------------
# Interpolation and walks.
def lerp(z1: Tensor, z2: Tensor, t: Tensor) -> Tensor:
    """Linear interpolation ``(1 - t) z1 + t z2``; ``t`` broadcasts against the latents' leading dimensions.

    Example:
        >>> lerp(torch.zeros(2), torch.ones(2), torch.tensor(0.25)).tolist()
        [0.25, 0.25]
    """
    return z1 + t[..., None] * (z2 - z1) if t.ndim else z1 + t * (z2 - z1)


def slerp(z1: Tensor, z2: Tensor, t: Tensor, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation along the great circle between ``z1`` and ``z2`` (last dimension), norms lerped.

    Gaussian latents in many dimensions concentrate on a shell of radius ``sqrt(d)``; a straight line between
    two of them passes near the origin, where the generator saw few latents, and slerp stays on the shell
    (White 2016, "Sampling Generative Networks"). Nearly parallel latents fall back to lerp.

    Example:
        >>> z = slerp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor(0.5))
        >>> [round(v, 4) for v in z.tolist()]
        [0.7071, 0.7071]
    """
    t = t[..., None] if t.ndim else t
    norm1, norm2 = z1.norm(dim=-1, keepdim=True), z2.norm(dim=-1, keepdim=True)
    u1, u2 = z1 / norm1.clamp_min(eps), z2 / norm2.clamp_min(eps)
    cos = (u1 * u2).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-4
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    direction = (torch.sin((1 - t) * omega) * u1 + torch.sin(t * omega) * u2) / safe_sin
    direction = torch.where(parallel, u1 + t * (u2 - u1), direction)
    return direction * (norm1 + t * (norm2 - norm1))


def interpolate_latents(z1: Tensor, z2: Tensor, steps: int, method: str = "slerp") -> Tensor:
    """``steps`` latents from ``z1`` to ``z2``, both ends included: (..., D) -> (..., steps, D).

    Example:
        >>> path = interpolate_latents(torch.zeros(3), torch.ones(3), 5, method="lerp")
        >>> path.shape, path[:, 0].tolist()
        (torch.Size([5, 3]), [0.0, 0.25, 0.5, 0.75, 1.0])
    """
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"method must be one of {INTERPOLATION_METHODS}, got {method!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2 (both ends are included), got {steps!r}.")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    t = torch.linspace(0, 1, steps, dtype=z1.dtype, device=z1.device)
    t = t.reshape(*([1] * (z1.ndim - 1)), steps)  # (1, ..., steps): one t per step, broadcast over the batch
    a, b = z1.unsqueeze(-2), z2.unsqueeze(-2)  # (..., 1, D)
    return (slerp if method == "slerp" else lerp)(a, b, t)


def walk_latents(points: Tensor, steps: int, method: str = "slerp", loop: bool = False) -> Tensor:
    """A path through ``points`` (K, D), ``steps`` frames per segment: ((K - 1) * steps + 1, D), or K * steps with ``loop``.

    Each segment contributes its start and ``steps - 1`` points after it; the last point closes the path (or,
    with ``loop``, a segment back to the first point makes an animation that repeats without a jump).

    Example:
        >>> walk_latents(torch.randn(3, 4), steps=4).shape
        torch.Size([9, 4])
        >>> walk_latents(torch.randn(3, 4), steps=4, loop=True).shape
        torch.Size([12, 4])
    """
    if points.ndim != 2 or points.shape[0] < 2:
        raise ValueError(f"points must have shape (K, D) with K >= 2, got {tuple(points.shape)}.")
    ends = torch.cat([points[1:], points[:1]]) if loop else points[1:]
    segments = interpolate_latents(points[: ends.shape[0]], ends, steps + 1, method)[:, :-1]  # (K', steps, D)
    path = segments.flatten(0, 1)
    return path if loop else torch.cat([path, points[-1:]])


def walk_weights(num_points: int, steps: int, loop: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """For each frame of :func:`walk_latents`, the indices of its segment's two points and its position t in [0, 1].

    Used to morph anything that varies along a walk (e.g. label embeddings) frame by frame.

    Example:
        >>> start, end, t = walk_weights(3, steps=2)
        >>> start.tolist(), end.tolist(), t.tolist()
        ([0, 0, 1, 1, 1], [1, 1, 2, 2, 2], [0.0, 0.5, 0.0, 0.5, 1.0])
    """
    segments = num_points if loop else num_points - 1
    start = torch.arange(segments).repeat_interleave(steps)
    t = torch.arange(steps, dtype=torch.float32).repeat(segments) / steps
    end = (start + 1) % num_points
    if not loop:  # the closing frame: the last point itself
        start, end, t = torch.cat([start, start[-1:]]), torch.cat([end, end[-1:]]), torch.cat([t, torch.ones(1)])
    return start, end, t


# --------------------------------------------------------------------------------------------------
# Label morphing.
class _PrecomputedEmbedding(nn.Module):
    """Stands in for a generator's ``label_embedding``: returns given rows, whatever "labels" it is called with."""

    def __init__(self, rows: Tensor):
        super().__init__()
        self.rows = rows

    def forward(self, labels: Tensor) -> Tensor:
        return self.rows


@contextmanager
def label_embeddings_as(generator: nn.Module, embeddings: Tensor) -> Iterator[None]:
    """Make ``generator`` see ``embeddings`` (B, E) as its label embeddings for one call.

    Generators that condition through ``self.label_embedding(labels)`` (an ``nn.Embedding``, as the DCGAN
    generator does) can then be driven by mixtures of class embeddings: within the block, pass any labels of
    shape (B,) and the rows of ``embeddings`` are used instead of their lookups.

    Raises:
        ValueError: the generator has no ``label_embedding`` module.
    """
    original = getattr(generator, "label_embedding", None)
    if not isinstance(original, nn.Module):
        raise ValueError(
            f"{type(generator).__name__} has no `label_embedding` module, so its labels cannot be morphed (only kept). "
            "Morphing needs a generator that looks labels up through `self.label_embedding(labels)`; walk with one "
            "label instead."
        )
    generator.label_embedding = _PrecomputedEmbedding(embeddings)
    try:
        yield
    finally:
        generator.label_embedding = original


def morphed_label_embeddings(generator: nn.Module, start: Tensor, end: Tensor, t: Tensor) -> Tensor:
    """Linear mixtures ``(1 - t) E[start] + t E[end]`` of ``generator.label_embedding``'s rows, one per frame.

    Embeddings are learned vectors, not Gaussian draws, so they are mixed linearly.
    """
    embedding = getattr(generator, "label_embedding", None)
    if not isinstance(embedding, nn.Module):
        raise ValueError(
            f"{type(generator).__name__} has no `label_embedding` module, so its labels cannot be morphed (only kept)."
        )
    device = next(embedding.parameters()).device
    rows_start, rows_end = embedding(start.to(device)), embedding(end.to(device))
    return lerp(rows_start, rows_end, t.to(device=device, dtype=rows_start.dtype))


def generate_path(
    generator: nn.Module, z: Tensor, start_labels: Tensor | None = None, end_labels: Tensor | None = None, t: Tensor | None = None
) -> Tensor:
    """Run ``generator`` on latents ``z`` (N, D); labels kept where ``start_labels == end_labels``, else morphed by ``t``.

    ``start_labels`` None means an unconditional generator. Where any frame's two labels differ, every frame
    gets the mixture ``(1 - t) E[start] + t E[end]`` of the label embeddings (see :func:`label_embeddings_as`).
    Runs as called (mode and grad are the caller's).
    """
    if start_labels is None:
        return generator(z)
    end_labels = start_labels if end_labels is None else end_labels
    if torch.equal(start_labels, end_labels):
        return generator(z, start_labels)
    if t is None:
        raise ValueError("Morphing labels needs the position t in [0, 1] of every frame.")
    embeddings = morphed_label_embeddings(generator, start_labels, end_labels, t)
    with label_embeddings_as(generator, embeddings):
        return generator(z, start_labels)
