"""``GeneratorEMA``: an exponential moving average of a generator that never asks the device for a number.

``torch.optim.swa_utils.AveragedModel`` checks ``n_averaged == 0`` and reads the count back as a
Python number on every update: two host synchronisations per generator step, each of which drains
the GPU queue. Here the count lives in a Python integer (the ``n_averaged`` buffer is kept in step
on the device only so that checkpoints keep ``AveragedModel``'s layout: ``module.*`` and
``n_averaged``), and the update is one ``torch._foreach_lerp_`` over parameters and floating-point
buffers; integer buffers such as ``num_batches_tracked`` are copied.

BatchNorm running statistics belong to the weights that produced them, and the averaged weights are
not the live ones. ``batchnorm`` picks one of three conventions (:data:`BATCHNORM_CONVENTIONS`):

* ``"average"``: average the statistics like the weights (this library's original behaviour).
* ``"copy"``: copy the live network's statistics at each update (StyleGAN2-ADA copies all buffers).
* ``"recompute"``: leave them alone during training and, before the next use, re-estimate *standing*
  statistics for the averaged weights from a fixed set of forward passes
  (:meth:`GeneratorEMA.recompute_batchnorm_statistics`, as BigGAN does). :attr:`GeneratorEMA.needs_statistics`
  says when that is due (after an update, or a load); the owner runs it lazily, before sampling.

Other floating-point buffers are averaged under every convention.

The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the convention of
TensorFlow's ``ExponentialMovingAverage(num_updates=...)``): with a fixed 0.999 the average would
still be about half its random initialisation after 700 updates, and short runs would sample grey.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(2, 2)
    >>> ema = GeneratorEMA(net, decay=0.999)
    >>> with torch.no_grad():
    ...     _ = net.weight.add_(1.0)
    >>> ema.update(net)          # the first update copies the weights
    >>> torch.equal(ema.module.weight, net.weight), ema.num_updates
    (True, 1)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lightning_gen._compat import foreach_copy_, foreach_lerp_

BATCHNORM_CONVENTIONS = ("average", "copy", "recompute")


def warmed_up_decay(decay: float, num_updates: int) -> float:
    """The decay applied at an update that follows ``num_updates`` earlier ones."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


class GeneratorEMA(nn.Module):
    """A frozen copy of ``model`` that tracks its exponential moving average.

    Args:
        model: the network to average (copied; the copy never gets gradients).
        decay: the decay once warmed up, in (0, 1).
        batchnorm: what the copy's BatchNorm running statistics are, one of :data:`BATCHNORM_CONVENTIONS`
            (see the module docstring).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4))
        >>> ema = GeneratorEMA(net, decay=0.9, batchnorm="recompute")
        >>> ema.update(net)
        >>> ema.needs_statistics
        True
        >>> ema.recompute_batchnorm_statistics((torch.randn(8, 2),) for _ in range(4))
        >>> ema.needs_statistics, int(ema.module[1].num_batches_tracked)
        (False, 4)
    """

    def __init__(self, model: nn.Module, decay: float, batchnorm: str = "average"):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}.")
        if batchnorm not in BATCHNORM_CONVENTIONS:
            raise ValueError(f"batchnorm must be one of {BATCHNORM_CONVENTIONS}, got {batchnorm!r}.")
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)  # DDP and optimizers must never wait for its gradients
        self.decay = decay
        self.batchnorm = batchnorm
        self.num_updates = 0  # the Python truth; the buffer below mirrors it for the checkpoint layout
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))
        # Names of the running-statistics buffers (as named_buffers() spells them).
        self._statistics_names = {
            f"{prefix}.{name}" if prefix else name
            for prefix, layer in self.module.named_modules()
            if isinstance(layer, _BatchNorm) and layer.track_running_stats
            for name in ("running_mean", "running_var", "num_batches_tracked")
        }
        self.needs_statistics = False  # True when "recompute" statistics are out of date

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current parameters (and buffers, per ``batchnorm``)."""
        averaged = list(self.module.parameters())
        current = [p.detach() for p in model.parameters()]
        copied, sources = [], []
        for (name, avg), cur in zip(self.module.named_buffers(), model.buffers()):
            if name in self._statistics_names and self.batchnorm != "average":
                if self.batchnorm == "copy":
                    copied.append(avg), sources.append(cur)
            elif avg.is_floating_point():
                averaged.append(avg), current.append(cur)
            else:
                copied.append(avg), sources.append(cur)
        if self.num_updates == 0:
            foreach_copy_(averaged, current)
        else:
            foreach_lerp_(averaged, current, 1.0 - warmed_up_decay(self.decay, self.num_updates))
        if copied:
            foreach_copy_(copied, sources)
        self.num_updates += 1
        self.n_averaged.add_(1)  # device-side, no synchronisation
        self.needs_statistics = self.batchnorm == "recompute" and bool(self._statistics_names)

    @torch.no_grad()
    def recompute_batchnorm_statistics(self, batches: Iterable[tuple]) -> None:
        """Re-estimate the BatchNorm running statistics of the averaged weights (BigGAN's standing statistics).

        Each layer's statistics become the plain mean, over ``batches`` (each a tuple of the copy's forward
        arguments), of its batch statistics, every layer normalising by its batch statistics as in
        training. Other layers run in eval mode, and every submodule gets its own mode back afterwards.
        For these passes the layers' forward is a plain ``F.batch_norm``, so a ``SyncBatchNorm`` computes
        locally: under DDP every rank gets the same statistics from the same weights and inputs without
        communicating.
        """
        layers = [m for m in self.module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        modes = [(m, m.training) for m in self.module.modules()]
        try:
            self.module.eval()
            for layer in layers:
                layer.reset_running_stats()
            for count, args in enumerate(batches, start=1):
                for layer in layers:
                    layer.forward = _StandingStatisticsForward(layer, 1.0 / count)  # shadows the class's forward
                self.module(*args)
                for layer in layers:
                    layer.num_batches_tracked.add_(1)
        finally:
            for layer in layers:
                layer.__dict__.pop("forward", None)
            for module, training in modes:
                module.training = training
        self.needs_statistics = False

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        count = state_dict.get(prefix + "n_averaged")
        if count is not None:
            self.num_updates = int(count)  # one read when a checkpoint is loaded, not per step
        # Loaded statistics may predate the loaded weights: recompute them before the next use.
        self.needs_statistics = self.batchnorm == "recompute" and bool(self._statistics_names)


class _StandingStatisticsForward:
    """A BatchNorm layer's forward that normalises by the batch statistics and folds them into the running
    ones with weight ``factor`` (1/k on the k-th batch: a plain mean over the batches)."""

    def __init__(self, layer: _BatchNorm, factor: float):
        self.layer, self.factor = layer, factor

    def __call__(self, x: Tensor) -> Tensor:
        layer = self.layer
        return F.batch_norm(x, layer.running_mean, layer.running_var, layer.weight, layer.bias, True, self.factor, layer.eps)
