"""Train a GAN on a few hundred images: differentiable augmentation (DiffAugment, ADA) and LeCam regularisation.

With little data a discriminator memorises the training set and the generator collapses. The remedies here
act on what the discriminator sees and on how far its outputs may drift:

* :class:`DiffAugment` (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
  colour (brightness, saturation, contrast), translation by up to 1/8 of the image with zero padding and
  cutout of half the image, applied to every image the discriminator sees, real and generated alike.
* :class:`AdaptiveAugment` (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data",
  ADA): the "bgc" pipeline (x-flip, 90-degree rotations, integer translation; isotropic and anisotropic
  scaling, rotations, fractional translation; brightness, contrast, luma flip, hue, saturation), each op
  applied with probability ``p``, and ``p`` steered so that the overfitting signal r_t = E[sign(D(real))]
  stays at a target (0.6).
* :class:`LeCamRegularizer` (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under Limited
  Data"): keeps D's outputs on reals near an EMA of its outputs on fakes and vice versa.

Every augmentation is a plain ``nn.Module``, differentiable with respect to its input (the generator's
gradients flow through it), runs on the images' device and returns the images' dtype, and draws all its
randomness from the ``torch.Generator`` it is given, so a training loop that seeds its own noise generator
gets exactly the same augmentations after a resume. A call draws the same amount of randomness whatever ``p``
is, so changing ``p`` never shifts the stream. Augmentations are drawn per image, from one function that does
not know whether its batch is real or generated: reals and fakes get the same distribution of operations.

Nothing here reads a device value on the host during training: ADA accumulates its signal on the device and
updates ``p`` on the device every ``interval`` calls, and LeCam's anchors are device tensors updated in place.
ADA's state (``p``, the pending signal) and LeCam's anchors are buffers, so a checkpoint restores them exactly.

Why not kornia: its augmentation modules (checked at 0.9.0) clamp colour ops to [0, 1] (our images are in
[-1, 1]; the clamp also zeroes the gradient of every clipped pixel), draw their parameters from the global
RNG on the CPU with no ``torch.Generator`` argument (so resumes could not be exact and every call copies
parameters to the device), take ``p`` as a Python float (ADA's ``p`` would have to be read back to the host),
and translate by continuous amounts with bilinear resampling where DiffAugment shifts whole pixels. The ops
are a few lines of tensor arithmetic each, so they are written here rather than adding a dependency.

What this module is not: ADA's filter and noise groups ("f", "n") and its wavelet-based anti-aliased
resampling are not implemented; the geometric group resamples bilinearly with reflection padding.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AUGMENTS = ("diffaugment", "ada")
DIFFAUGMENT_OPS = ("color", "translation", "cutout")
ADA_GROUPS = {"b": "blit (x-flip, 90-degree rotation, integer translation)", "g": "geometric", "c": "color", "o": "cutout"}

# Sums a tensor over processes and returns the sum on every rank, e.g. :func:`sum_across_processes`.
SumAcrossProcesses = Callable[[Tensor], Tensor]


def sum_across_processes(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all processes in place (``all_reduce``) and return it; the identity without DDP.

    Lightning's ``strategy.reduce`` would do too, but it runs a ``barrier`` first, which waits on the host.
    ``all_reduce`` alone is queued on the device like any other kernel under NCCL.

    Example:
        >>> import torch
        >>> sum_across_processes(torch.tensor([1.0, 2.0]))   # a single process: unchanged
        tensor([1., 2.])
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(tensor)
    return tensor


def _finite_sum_and_count(values: Tensor) -> tuple[Tensor, Tensor]:
    # Non-finite logits (a diverging step that the training loop's guard will catch later) must not poison
    # state that is kept for the rest of training, so they are left out; computed on the device.
    values = values.detach().float()
    finite = torch.isfinite(values)
    return torch.where(finite, values, 0.0).sum(), finite.sum().float()


def _rand(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, device=like.device, generator=generator)


def _randn(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(n, device=like.device, generator=generator)


def _gate(p: Tensor | float, n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """1.0 for the images an op applies to (each with probability ``p``), else 0.0; float32, shape (n,)."""
    return (_rand(n, like, generator) < p).float()


def _per_image(values: Tensor, images: Tensor) -> Tensor:
    """(B,) float32 values as (B, 1, 1, 1) in the images' dtype, to broadcast over an image batch."""
    return values.to(images.dtype).view(-1, 1, 1, 1)


def _translate_whole_pixels(images: Tensor, shift_x: Tensor, shift_y: Tensor, pad: int) -> Tensor:
    """Shift each image by integer pixels (B,), at most ``pad``, with zero padding; gradients reach the pixels kept."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = torch.arange(height, device=images.device) + pad - shift_y.view(-1, 1)  # (B, H)
    cols = torch.arange(width, device=images.device) + pad - shift_x.view(-1, 1)  # (B, W)
    batch_index = torch.arange(batch, device=images.device).view(-1, 1, 1)
    # Two advanced indices around a slice put the indexed dimensions first: (B, H, W, C).
    shifted = padded[batch_index, :, rows.view(batch, height, 1), cols.view(batch, 1, width)]
    return shifted.permute(0, 3, 1, 2)


def _cutout(images: Tensor, size_ratio: float, gate: Tensor, generator: torch.Generator | None) -> Tensor:
    """Zero a square of ``size_ratio`` of each side at a uniform random centre, on the images where ``gate`` is 1."""
    batch, _, height, width = images.shape
    box_h, box_w = int(height * size_ratio + 0.5), int(width * size_ratio + 0.5)
    top = (_rand(batch, images, generator) * height).long().view(-1, 1) - box_h // 2
    left = (_rand(batch, images, generator) * width).long().view(-1, 1) - box_w // 2
    rows = torch.arange(height, device=images.device).view(1, -1)
    cols = torch.arange(width, device=images.device).view(1, -1)
    in_rows = (rows >= top) & (rows < top + box_h)  # (B, H)
    in_cols = (cols >= left) & (cols < left + box_w)  # (B, W)
    cut = in_rows.view(batch, 1, height, 1) & in_cols.view(batch, 1, 1, width) & (gate.view(-1, 1, 1, 1) > 0)
    return images * (~cut).to(images.dtype)


class DiffAugment(nn.Module):
    """DiffAugment (Zhao et al. 2020): the same random colour, translation and cutout for reals and fakes.

    Each op in ``policy`` is applied per image with probability ``p`` (1, always, as in the paper):

    * ``color``: brightness + U(-0.5, 0.5), saturation x U(0, 2) around the per-pixel channel mean, contrast
      x U(0.5, 1.5) around the image mean (images are in [-1, 1]; nothing is clamped).
    * ``translation``: a shift by whole pixels, up to ``translation_ratio`` (1/8) of the side, zero padding.
    * ``cutout``: a square of ``cutout_ratio`` (1/2) of the side set to zero, at a random centre.

    Args:
        policy: comma-separated ops from :data:`DIFFAUGMENT_OPS`, applied in the order given; "" is the identity.
        p: probability that each op is applied to an image.
        translation_ratio: largest shift as a fraction of the image side.
        cutout_ratio: side of the cut-out square as a fraction of the image side.

    Example:
        >>> import torch
        >>> augment = DiffAugment("color,translation,cutout")
        >>> images = torch.rand(4, 3, 16, 16) * 2 - 1
        >>> augment(images, torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3, 16, 16])
        >>> torch.equal(augment(images, torch.Generator().manual_seed(0)), augment(images, torch.Generator().manual_seed(0)))
        True
    """

    def __init__(self, policy: str = "color,translation,cutout", p: float = 1.0, translation_ratio: float = 0.125, cutout_ratio: float = 0.5):
        super().__init__()
        self.ops = tuple(op.strip() for op in policy.split(",") if op.strip())
        unknown = [op for op in self.ops if op not in DIFFAUGMENT_OPS]
        if unknown:
            raise ValueError(f"DiffAugment policy {policy!r} has unknown ops {unknown}; use a comma-separated subset of {DIFFAUGMENT_OPS}.")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}.")
        for name, value in (("translation_ratio", translation_ratio), ("cutout_ratio", cutout_ratio)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (a fraction of the image side), got {value!r}.")
        self.translation_ratio, self.cutout_ratio = translation_ratio, cutout_ratio
        # A buffer so it lives on the images' device like ADA's p; not saved (it is a constructor argument).
        self.register_buffer("p", torch.tensor(float(p)), persistent=False)

    def extra_repr(self) -> str:
        return f"policy={','.join(self.ops)!r}, p={float(self.p)}"

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch (B, C, H, W); draws from ``generator`` (the global RNG when ``None``)."""
        for op in self.ops:
            if op == "color":
                images = self._color(images, generator)
            elif op == "translation":
                images = self._translation(images, generator)
            else:
                images = _cutout(images, self.cutout_ratio, _gate(self.p, images.shape[0], images, generator), generator)
        return images

    def update(self, real_logits: Tensor, reduce: SumAcrossProcesses | None = None) -> None:
        """Nothing to adapt (same interface as :meth:`AdaptiveAugment.update`, so a training loop needs no branch)."""

    def _color(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        n = images.shape[0]
        # Written as x + gate * change, so an image the gate skips is returned bit-for-bit.
        brightness = _gate(self.p, n, images, generator) * (_rand(n, images, generator) - 0.5)
        images = images + _per_image(brightness, images)
        saturation = _gate(self.p, n, images, generator) * (_rand(n, images, generator) * 2.0 - 1.0)  # factor - 1
        mean = images.mean(dim=1, keepdim=True)
        images = images + (images - mean) * _per_image(saturation, images)
        contrast = _gate(self.p, n, images, generator) * (_rand(n, images, generator) - 0.5)  # factor - 1
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return images + (images - mean) * _per_image(contrast, images)

    def _translation(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        n, _, height, width = images.shape
        gate = _gate(self.p, n, images, generator)
        shifts, largest_shifts = [], []
        for side in (width, height):
            largest = int(side * self.translation_ratio + 0.5)
            # Uniform over the 2 * largest + 1 whole-pixel shifts in [-largest, largest].
            shift = (_rand(n, images, generator) * (2 * largest + 1)).floor().clamp_max(2 * largest) - largest
            shifts.append((shift * gate).long())
            largest_shifts.append(largest)
        return _translate_whole_pixels(images, *shifts, pad=max(largest_shifts))


class AdaptiveAugment(nn.Module):
    """ADA (Karras et al. 2020): augment with probability ``p``, steered by the overfitting signal E[sign(D(real))].

    Call :meth:`forward` on every image the discriminator sees and :meth:`update` once per discriminator step with
    D's logits on the (augmented) reals. Every ``interval`` updates, r_t = mean(sign(logits)) over the images
    since the last adjustment is compared with ``target``: above it D is overconfident on reals and ``p`` rises,
    below it ``p`` falls, by ``images / speed_images`` where ``images`` is the number of real images in the
    window (all ranks' under DDP), so ``p`` can go from 0 to 1 in ``speed_images`` images (500k in the paper;
    a run over a few hundred images for a few thousand steps needs a much smaller value, e.g. 20k).

    Args:
        pipeline: groups of ops from :data:`ADA_GROUPS` (the paper's default "bgc"); they run in the paper's
            order (blit, geometric, colour, cutout) whatever the order of the letters.
        target: the value of r_t to hold (0.6 in the paper).
        speed_images: images over which ``p`` may move by 1.
        interval: adjust ``p`` every this many :meth:`update` calls (4 in the paper).
        initial_p: ``p`` at the start of training.

    Example:
        >>> import torch
        >>> ada = AdaptiveAugment(speed_images=64, interval=1)
        >>> ada.update(torch.ones(32))     # D says "real" to every real image: r_t = 1 > 0.6
        >>> round(float(ada.p), 3)         # p rose by 32 images / 64
        0.5
        >>> ada(torch.zeros(2, 3, 16, 16), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 16, 16])
    """

    p: Tensor
    signal: Tensor

    def __init__(self, pipeline: str = "bgc", target: float = 0.6, speed_images: int = 500_000, interval: int = 4, initial_p: float = 0.0):
        super().__init__()
        unknown = sorted(set(pipeline) - set(ADA_GROUPS))
        if unknown or not pipeline:
            raise ValueError(f"ADA pipeline {pipeline!r} must be a non-empty string of group letters from {''.join(ADA_GROUPS)!r} ({ADA_GROUPS}); unknown: {unknown}.")
        if not 0.0 <= target < 1.0:
            raise ValueError(f"target must be in [0, 1) (the paper uses 0.6), got {target!r}.")
        if not speed_images > 0:
            raise ValueError(f"speed_images must be > 0 (images over which p may move by 1), got {speed_images!r}.")
        if not (isinstance(interval, int) and interval >= 1):
            raise ValueError(f"interval must be an integer >= 1 (discriminator steps between adjustments), got {interval!r}.")
        if not 0.0 <= initial_p <= 1.0:
            raise ValueError(f"initial_p must be a probability in [0, 1], got {initial_p!r}.")
        self.pipeline, self.target, self.speed_images, self.interval = pipeline, float(target), float(speed_images), interval
        self.register_buffer("p", torch.tensor(float(initial_p)))
        self.register_buffer("signal", torch.tensor(0.0))  # r_t at the last adjustment, for logging
        # The window since the last adjustment, kept on the device and in checkpoints so a resume is exact.
        self.register_buffer("sign_sum", torch.tensor(0.0))
        self.register_buffer("image_count", torch.tensor(0.0))
        self.register_buffer("pending_updates", torch.tensor(0, dtype=torch.long))
        self._pending_updates = 0  # host copy of pending_updates, so deciding when to adjust reads no device value
        self.register_load_state_dict_post_hook(_sync_pending_updates)

    def extra_repr(self) -> str:
        return f"pipeline={self.pipeline!r}, target={self.target}, speed_images={int(self.speed_images)}, interval={self.interval}"

    @torch.no_grad()
    def update(self, real_logits: Tensor, reduce: SumAcrossProcesses | None = None) -> None:
        """Add D's logits on reals to the signal; every ``interval`` calls, adjust ``p`` on the device.

        Args:
            real_logits: the discriminator's logits on this step's (augmented) real images; non-finite ones
                are left out.
            reduce: sums a tensor over processes (:func:`sum_across_processes`); pass it under DDP so every rank
                adjusts ``p`` by the same amount. It is called with one 2-element tensor every ``interval``
                calls, on every rank, so every rank must call :meth:`update` equally often.
        """
        logits = real_logits.detach().float()
        sign_sum, count = _finite_sum_and_count(torch.where(torch.isfinite(logits), logits.sign(), torch.nan))
        self.sign_sum += sign_sum
        self.image_count += count
        self._pending_updates += 1
        if self._pending_updates < self.interval:
            self.pending_updates.fill_(self._pending_updates)
            return
        totals = torch.stack([self.sign_sum, self.image_count])
        if reduce is not None:
            totals = reduce(totals)
        signal = totals[0] / totals[1].clamp_min(1.0)
        step = torch.sign(signal - self.target) * totals[1] / self.speed_images
        self.p.copy_((self.p + step).clamp(0.0, 1.0))
        self.signal.copy_(signal)
        self.sign_sum.zero_()
        self.image_count.zero_()
        self._pending_updates = 0
        self.pending_updates.zero_()

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch (B, C, H, W) with probability ``p`` per op; draws from ``generator``."""
        if "b" in self.pipeline or "g" in self.pipeline:
            images = self._geometric(images, generator)
        if "c" in self.pipeline:
            images = self._color(images, generator)
        if "o" in self.pipeline:
            images = _cutout(images, 0.5, _gate(self.p, images.shape[0], images, generator), generator)
        return images

    def _geometric(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        n, _, height, width = images.shape
        p = self.p
        # The sampling matrix maps output pixel coordinates (origin at the centre) to input ones, i.e. it is the
        # inverse of the augmentation. Every op's parameter distribution is symmetric (t and -t, s and 1/s,
        # theta and -theta equally likely), so drawing the inverse op directly has the same distribution.
        inverse = torch.eye(3, device=images.device).expand(n, 3, 3)
        touched = torch.zeros(n, device=images.device)
        if "b" in self.pipeline:
            gate = _gate(p, n, images, generator)
            flip = (_rand(n, images, generator) < 0.5).float() * gate
            inverse = inverse @ _scale(1.0 - 2.0 * flip, torch.ones_like(flip))
            gate = _gate(p, n, images, generator)
            quarter_turns = (_rand(n, images, generator) * 4).floor().clamp_max(3).long() * gate.long()
            inverse = inverse @ _quarter_turn(quarter_turns)
            gate = _gate(p, n, images, generator)
            shift_x = ((_rand(n, images, generator) - 0.5) * 0.25 * width).round() * gate
            shift_y = ((_rand(n, images, generator) - 0.5) * 0.25 * height).round() * gate
            inverse = inverse @ _translate(shift_x, shift_y)
            touched = touched + flip + quarter_turns.float() + shift_x.abs() + shift_y.abs()
        if "g" in self.pipeline:
            # The two rotations are each applied with 1 - sqrt(1 - p), so some rotation happens with probability p.
            p_rotation = 1.0 - torch.sqrt(1.0 - p)
            gate = _gate(p, n, images, generator)
            log_scale = _randn(n, images, generator) * 0.2 * gate
            inverse = inverse @ _scale(torch.exp2(log_scale), torch.exp2(log_scale))
            gate = _gate(p_rotation, n, images, generator)
            angle_1 = (_rand(n, images, generator) * 2 - 1) * math.pi * gate
            inverse = inverse @ _rotate(angle_1)
            gate = _gate(p, n, images, generator)
            log_aniso = _randn(n, images, generator) * 0.2 * gate
            inverse = inverse @ _scale(torch.exp2(log_aniso), torch.exp2(-log_aniso))
            gate = _gate(p_rotation, n, images, generator)
            angle_2 = (_rand(n, images, generator) * 2 - 1) * math.pi * gate
            inverse = inverse @ _rotate(angle_2)
            gate = _gate(p, n, images, generator)
            frac_x = _randn(n, images, generator) * 0.125 * width * gate
            frac_y = _randn(n, images, generator) * 0.125 * height * gate
            inverse = inverse @ _translate(frac_x, frac_y)
            touched = touched + log_scale.abs() + angle_1.abs() + log_aniso.abs() + angle_2.abs() + frac_x.abs() + frac_y.abs()
        # affine_grid works in [-1, 1] coordinates: convert the pixel-space matrix (square pixels, so rotations
        # stay rotations on non-square images).
        half_w, half_h = torch.full((n,), width / 2.0, device=images.device), torch.full((n,), height / 2.0, device=images.device)
        theta = (_scale(1.0 / half_w, 1.0 / half_h) @ inverse @ _scale(half_w, half_h))[:, :2, :]
        # Bilinear weights in bf16/fp16 (8-10 bit mantissas) visibly distort the image: resample in float32.
        work = images if images.dtype in (torch.float32, torch.float64) else images.float()
        grid = F.affine_grid(theta.to(work.dtype), list(work.shape), align_corners=False)
        resampled = F.grid_sample(work, grid, mode="bilinear", padding_mode="reflection", align_corners=False).to(images.dtype)
        # Images no op touched are returned bit-for-bit (resampling at pixel centres is exact only up to rounding).
        return torch.where(touched.view(-1, 1, 1, 1) > 0, resampled, images)

    def _color(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        n, channels = images.shape[:2]
        p = self.p
        eye = torch.eye(channels + 1, device=images.device)
        luma_outer = torch.zeros(channels + 1, channels + 1, device=images.device)
        luma_outer[:channels, :channels] = 1.0 / channels  # projection onto the grey axis (1, ..., 1) / sqrt(C)
        # Colour transforms act on (C + 1)-vectors [rgb, 1]; each is composed on the left, in the paper's order.
        brightness = _randn(n, images, generator) * 0.2 * _gate(p, n, images, generator)
        color = eye.repeat(n, 1, 1)
        color[:, :channels, channels] = brightness.view(-1, 1)
        contrast = torch.exp2(_randn(n, images, generator) * 0.5 * _gate(p, n, images, generator))
        color = _diag_scale(contrast, channels) @ color
        luma_flip = (_rand(n, images, generator) < 0.5).float() * _gate(p, n, images, generator)
        color = (eye - 2.0 * luma_flip.view(-1, 1, 1) * luma_outer) @ color
        hue_angle = (_rand(n, images, generator) * 2 - 1) * math.pi * _gate(p, n, images, generator)
        if channels == 3:  # a hue rotation is a rotation about the grey axis, defined for RGB only
            color = _rotate_about_grey(hue_angle) @ color
        log_saturation = _randn(n, images, generator) * 1.0 * _gate(p, n, images, generator)
        chroma = eye - luma_outer
        chroma[channels, channels] = 0.0  # saturation scales the colour part only, not the homogeneous 1
        color = (eye - chroma + chroma * torch.exp2(log_saturation).view(-1, 1, 1)) @ color
        color = color.to(images.dtype)
        flat = images.reshape(n, channels, -1)
        out = torch.baddbmm(color[:, :channels, channels:], color[:, :channels, :channels], flat).reshape(images.shape)
        # Images no op touched are returned bit-for-bit (a product of identity-like matrices may be off by an ulp).
        touched = brightness.abs() + (contrast - 1).abs() + luma_flip + hue_angle.abs() + log_saturation.abs()
        return torch.where(touched.view(-1, 1, 1, 1) > 0, out, images)


def _sync_pending_updates(module: AdaptiveAugment, incompatible_keys) -> None:
    # The one host read of ADA's state: when a checkpoint is loaded, not during training.
    module._pending_updates = int(module.pending_updates)


def _scale(sx: Tensor, sy: Tensor) -> Tensor:
    matrix = torch.zeros(sx.shape[0], 3, 3, device=sx.device)
    matrix[:, 0, 0], matrix[:, 1, 1], matrix[:, 2, 2] = sx, sy, 1.0
    return matrix


def _translate(tx: Tensor, ty: Tensor) -> Tensor:
    matrix = torch.eye(3, device=tx.device).repeat(tx.shape[0], 1, 1)
    matrix[:, 0, 2], matrix[:, 1, 2] = tx, ty
    return matrix


def _rotate(angle: Tensor) -> Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    matrix = torch.eye(3, device=angle.device).repeat(angle.shape[0], 1, 1)
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 0], matrix[:, 1, 1] = cos, -sin, sin, cos
    return matrix


def _quarter_turn(turns: Tensor) -> Tensor:
    # Exact cosines and sines of multiples of 90 degrees (math.cos(pi / 2) is 6e-17, not 0).
    # Built with comparisons on the device: torch.tensor([...], device=cuda) would be a blocking copy.
    cos = (turns == 0).float() - (turns == 2).float()
    sin = (turns == 1).float() - (turns == 3).float()
    matrix = torch.eye(3, device=turns.device).repeat(turns.shape[0], 1, 1)
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 0], matrix[:, 1, 1] = cos, -sin, sin, cos
    return matrix


def _diag_scale(factor: Tensor, channels: int) -> Tensor:
    matrix = torch.eye(channels + 1, device=factor.device).repeat(factor.shape[0], 1, 1)
    matrix[:, :channels, :channels] *= factor.view(-1, 1, 1)
    return matrix


def _rotate_about_grey(angle: Tensor) -> Tensor:
    """Rotations of RGB about the grey axis (1, 1, 1) / sqrt(3) by ``angle`` (B,), as (B, 4, 4) matrices (Rodrigues)."""
    k = 1.0 / math.sqrt(3.0)
    # cross = [axis]_x, the cross-product matrix, written from the constant k so nothing is copied to the device.
    cross = torch.zeros(3, 3, device=angle.device)
    cross[0, 1], cross[0, 2], cross[1, 0], cross[1, 2], cross[2, 0], cross[2, 1] = -k, k, k, -k, -k, k
    outer = torch.full((3, 3), k * k, device=angle.device)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    rotation = cos * torch.eye(3, device=angle.device) + sin * cross + (1 - cos) * outer
    matrix = torch.eye(4, device=angle.device).repeat(angle.shape[0], 1, 1)
    matrix[:, :3, :3] = rotation
    return matrix


def build_augment(
    augment: str | None, ada_target: float = 0.6, ada_speed_images: int = 500_000, ada_interval: int = 4
) -> DiffAugment | AdaptiveAugment | None:
    """The augmentation a module argument names: ``None``, ``"diffaugment[:policy]"`` or ``"ada[:pipeline]"``.

    Example:
        >>> build_augment("diffaugment:color,cutout")
        DiffAugment(policy='color,cutout', p=1.0)
        >>> build_augment("ada", ada_speed_images=20_000)
        AdaptiveAugment(pipeline='bgc', target=0.6, speed_images=20000, interval=4)
    """
    if augment is None:
        return None
    name, _, options = augment.partition(":")
    if name == "diffaugment":
        return DiffAugment(options) if options else DiffAugment()
    if name == "ada":
        return AdaptiveAugment(options or "bgc", target=ada_target, speed_images=ada_speed_images, interval=ada_interval)
    raise ValueError(
        f"augment must be None, 'diffaugment[:ops]' (ops from {DIFFAUGMENT_OPS}) or 'ada[:groups]' (groups from "
        f"{''.join(ADA_GROUPS)}), got {augment!r}."
    )


class LeCamRegularizer(nn.Module):
    """LeCam regularisation (Tseng et al. 2021): pull D's outputs towards EMA anchors of the other side's outputs.

    ``loss = mean(relu(D(real) - ema_fake)^2) + mean(relu(ema_real - D(fake))^2)``, where ``ema_real`` and
    ``ema_fake`` are exponential moving averages (decay 0.99, as in the paper) of the batch-mean logits. Call
    :meth:`update` with the step's logits, then add ``weight * regularizer(real_logits, fake_logits)`` to D's
    loss. The anchors are buffers (checkpointed) and updated on the device; the first update sets them to the
    first batch's means rather than averaging in their zero initialisation.

    Args:
        decay: EMA decay of the anchors.

    Example:
        >>> import torch
        >>> lecam = LeCamRegularizer()
        >>> lecam.update(torch.tensor([2.0, 2.0]), torch.tensor([-1.0, -1.0]))   # anchors: real 2, fake -1
        >>> float(lecam(torch.tensor([3.0]), torch.tensor([0.0])))                # (3 - -1)^2 + relu(2 - 0)^2
        20.0
    """

    ema_real: Tensor
    ema_fake: Tensor

    def __init__(self, decay: float = 0.99):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1) (the paper uses 0.99), got {decay!r}.")
        self.decay = decay
        self.register_buffer("ema_real", torch.tensor(0.0))
        self.register_buffer("ema_fake", torch.tensor(0.0))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"decay={self.decay}"

    @torch.no_grad()
    def update(self, real_logits: Tensor, fake_logits: Tensor, reduce: SumAcrossProcesses | None = None) -> None:
        """Move the anchors towards this step's mean logits, on the device.

        Args:
            real_logits: D's logits on this step's reals; non-finite ones are left out.
            fake_logits: D's logits on this step's fakes.
            reduce: sums a tensor over processes (:func:`sum_across_processes`): the anchors then follow the
                mean over all ranks' logits and stay identical on every rank (one 4-float ``all_reduce`` per call).
                Without it each rank keeps its own anchors, and a checkpoint holds rank 0's.
        """
        totals = torch.stack([*_finite_sum_and_count(real_logits), *_finite_sum_and_count(fake_logits)])
        if reduce is not None:
            totals = reduce(totals)
        real_mean, fake_mean = totals[0] / totals[1].clamp_min(1.0), totals[2] / totals[3].clamp_min(1.0)
        seen = ((totals[1] > 0) & (totals[3] > 0)).long()
        # Weight 1 on the first update (anchor = first mean), 1 - decay afterwards, 0 when every logit was
        # non-finite; chosen on the device.
        weight = torch.where(self.num_updates > 0, 1.0 - self.decay, 1.0) * seen
        self.ema_real.lerp_(real_mean, weight)
        self.ema_fake.lerp_(fake_mean, weight)
        self.num_updates += seen

    def forward(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """The regulariser for this step's logits (float32 scalar, differentiable with respect to the logits)."""
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        return F.relu(real_logits - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake_logits).pow(2).mean()
