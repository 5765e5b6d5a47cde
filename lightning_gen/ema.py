"""``GeneratorEMA``: an exponential moving average of a generator that never asks the device for a number.

``torch.optim.swa_utils.AveragedModel`` checks ``n_averaged == 0`` and reads the count back as a
Python number on every update: two host synchronisations per generator step, each of which drains
the GPU queue. Here the count lives in a Python integer (the ``n_averaged`` buffer is kept in step
on the device only so that checkpoints keep ``AveragedModel``'s layout: ``module.*`` and
``n_averaged``), and the update is one ``torch._foreach_lerp_`` over parameters and floating-point
buffers (BatchNorm statistics are averaged too, so the EMA generator is self-consistent); integer
buffers such as ``num_batches_tracked`` are copied.

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
from typing import Any

import torch
from torch import Tensor, nn


def warmed_up_decay(decay: float, num_updates: int) -> float:
    """The decay applied at an update that follows ``num_updates`` earlier ones."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


class GeneratorEMA(nn.Module):
    """A frozen copy of ``model`` that tracks its exponential moving average.

    Args:
        model: the network to average (copied; the copy never gets gradients).
        decay: the decay once warmed up, in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}.")
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)  # DDP and optimizers must never wait for its gradients
        self.decay = decay
        self.num_updates = 0  # the Python truth; the buffer below mirrors it for the checkpoint layout
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current parameters and buffers."""
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [t.detach() for t in (*model.parameters(), *model.buffers())]
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        others = [(a, c) for a, c in zip(averaged, current) if not a.is_floating_point()]
        if floats:
            avg, cur = map(list, zip(*floats))
            if self.num_updates == 0:
                torch._foreach_copy_(avg, cur)
            else:
                torch._foreach_lerp_(avg, cur, 1.0 - warmed_up_decay(self.decay, self.num_updates))
        if others:
            avg, cur = map(list, zip(*others))
            torch._foreach_copy_(avg, cur)
        self.num_updates += 1
        self.n_averaged.add_(1)  # device-side, no synchronisation

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        count = state_dict.get(prefix + "n_averaged")
        if count is not None:
            self.num_updates = int(count)  # one read when a checkpoint is loaded, not per step
