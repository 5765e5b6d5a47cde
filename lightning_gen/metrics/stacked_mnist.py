"""Mode coverage on Stacked MNIST: how many of the 1,000 digit triples a generator draws, and how evenly.

Protocol (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018; R3GAN, Huang et al. 2024): generate
26,000 images, read each of the three channels with a digit classifier, and call the triple of
predicted digits the sample's mode (``100 * red + 10 * green + blue``). Report

* **modes**: how many of the 1,000 modes occur at least once;
* **reverse KL**: ``KL(p_generated || uniform) = sum_m p(m) * log(p(m) * 1000)`` in nats over the
  modes that occur. 0 for a perfectly even generator, ``log 1000 = 6.91`` for one that draws a single mode.

The data itself is not exactly uniform (its digit classes are not equally frequent), so its own KL is
above 0: compare with :func:`count_modes` on the data's modes. The classifier is passed in as a callable;
this module does not pick or train one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import Tensor

from lightning_gen.data.stacked_mnist import NUM_MODES, stacked_mode

__all__ = ["ModeCoverage", "count_modes", "mode_coverage", "predict_channel_digits"]

#: Samples per evaluation in the protocol of VEEGAN, PacGAN and R3GAN.
PROTOCOL_NUM_SAMPLES = 26_000

DigitClassifier = Callable[[Tensor], Tensor]


class ModeCoverage(NamedTuple):
    """The result of :func:`count_modes`."""

    modes: int  # modes drawn at least once, of 1,000
    reverse_kl: float  # KL(p_generated || uniform over the 1,000 modes), nats
    num_samples: int  # samples counted


def count_modes(channel_predictions: Tensor) -> ModeCoverage:
    """Modes covered and reverse KL to the uniform distribution from predicted digits per channel.

    Args:
        channel_predictions: ``(N, 3)`` integer digits 0..9 predicted for the red, green and blue
            channel of each of N samples (or ``(N,)`` mode indices 0..999).

    Example:
        >>> import math, torch
        >>> result = count_modes(torch.tensor([[0, 0, 1], [0, 0, 1], [9, 9, 9], [1, 2, 3]]))
        >>> result.modes, result.num_samples
        (3, 4)
        >>> math.isclose(result.reverse_kl, 0.5 * math.log(500) + 2 * 0.25 * math.log(250))
        True
    """
    predictions = torch.as_tensor(channel_predictions).long().cpu()
    if predictions.ndim == 2 and predictions.shape[1] == 3:
        if predictions.numel() and (predictions.min() < 0 or predictions.max() > 9):
            raise ValueError(f"channel predictions must be digits 0..9, got the range {int(predictions.min())}..{int(predictions.max())}.")
        modes = stacked_mode(predictions[:, 0], predictions[:, 1], predictions[:, 2])
    elif predictions.ndim == 1:
        modes = predictions
        if modes.numel() and (modes.min() < 0 or modes.max() >= NUM_MODES):
            raise ValueError(f"mode indices must be in 0..{NUM_MODES - 1}, got the range {int(modes.min())}..{int(modes.max())}.")
    else:
        raise ValueError(f"channel_predictions must have shape (N, 3) (digits per channel) or (N,) (modes), got {tuple(predictions.shape)}.")
    if modes.numel() == 0:
        raise ValueError("count_modes needs at least one sample.")
    counts = torch.bincount(modes, minlength=NUM_MODES).double()
    probabilities = counts[counts > 0] / counts.sum()
    reverse_kl = float((probabilities * (probabilities * NUM_MODES).log()).sum())
    return ModeCoverage(int((counts > 0).sum()), max(reverse_kl, 0.0), int(modes.numel()))


@torch.no_grad()
def predict_channel_digits(images: Tensor, classifier: DigitClassifier, batch_size: int = 1024) -> Tensor:
    """Read each channel of ``(N, 3, H, W)`` images as a grayscale digit: ``(N, 3)`` predicted digits.

    ``images`` are float in [-1, 1] (what generators output) or uint8 in 0..255; each channel is given to
    ``classifier`` as a ``(B, 1, H, W)`` float image in [-1, 1]. The classifier returns ``(B, 10)`` logits
    or ``(B,)`` predicted digits.

    Example:
        >>> import torch
        >>> brightest_decile = lambda x: ((x.mean(dim=(1, 2, 3)) + 1) * 5).clamp(0, 9).long()
        >>> images = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 1.0)])
        >>> predict_channel_digits(images, brightest_decile)[:, 0].tolist()
        [0, 5, 9]
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}.")
    predictions = []
    for chunk in images.split(batch_size):
        chunk = chunk.float() / 127.5 - 1.0 if chunk.dtype == torch.uint8 else chunk.float().clamp(-1.0, 1.0)
        n = chunk.shape[0]
        output = classifier(chunk.reshape(n * 3, 1, *chunk.shape[2:]))  # channel c of image i at row 3i + c
        digits = output.argmax(dim=1) if output.ndim == 2 else output
        predictions.append(digits.reshape(n, 3).long().cpu())
    return torch.cat(predictions)


def mode_coverage(batches: Iterable[Tensor], classifier: DigitClassifier, batch_size: int = 1024) -> ModeCoverage:
    """:func:`count_modes` of images given in batches (e.g. a generator's samples, or the data's images).

    Example:
        >>> import torch
        >>> coverage = mode_coverage([-torch.ones(5, 3, 4, 4)], lambda x: torch.zeros(x.shape[0], dtype=torch.long))
        >>> coverage.modes, round(coverage.reverse_kl, 4) == round(math.log(1000), 4)
        (1, True)
    """
    predictions = [predict_channel_digits(batch, classifier, batch_size) for batch in batches]
    if not predictions:
        raise ValueError("mode_coverage needs at least one batch of images.")
    return count_modes(torch.cat(predictions))
