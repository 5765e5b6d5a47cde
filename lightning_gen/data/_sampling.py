"""The shuffling sampler that both data modules use for their training split.

Its order depends only on ``(seed, epoch)``, never on the global random state, so

* a run resumed from a checkpoint at epoch ``k`` sees the same order as a run that
  was never interrupted (Lightning calls ``set_epoch`` with the restored epoch);
* every DDP process builds the same permutation, which is what makes sharding it
  correct. With ``use_distributed_sampler=True`` Lightning wraps a custom sampler in
  ``DistributedSamplerWrapper`` *without* its own shuffling (only a ``RandomSampler``
  counts as "shuffled"), materialises our permutation on every rank, gives rank ``r``
  the positions ``r, r + world_size, ...``, and forwards ``set_epoch`` to us.
  Checked against lightning 2.6 (``fabric/utilities/distributed.py`` and
  ``pytorch/trainer/connectors/data_connector.py``).

It is not a distributed sampler itself and does no weighting or class balancing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochShuffleSampler"]


class EpochShuffleSampler(Sampler[int]):
    """Yield a permutation of ``range(num_samples)`` that depends only on seed and epoch.

    Args:
        num_samples: Size of the dataset.
        seed: Seed of the shuffle; the same seed gives the same order every run.

    Example:
        >>> sampler = EpochShuffleSampler(5, seed=0)
        >>> first = list(sampler)
        >>> sorted(first)
        [0, 1, 2, 3, 4]
        >>> list(sampler) == first  # same epoch, same order
        True
        >>> sampler.set_epoch(1)
        >>> sorted(sampler) == sorted(first)
        True
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``. Lightning calls this before every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(_mix(self.seed, self.epoch))
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


def _mix(seed: int, epoch: int) -> int:
    # Hash rather than seed + epoch, so that (seed=0, epoch=1) and (seed=1, epoch=0)
    # don't share an order.
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
