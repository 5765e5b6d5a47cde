"""Where the randomness of the training data comes from: the shuffle, and every per-item choice.

Everything random in the data path is a pure function of ``(seed, epoch, index)``, never of the
global random state or of which worker process runs it:

* :class:`EpochShuffleSampler` orders the training split by ``(seed, epoch)``;
* it yields :class:`EpochIndex` keys (the item *and* the epoch it is drawn for), so a worker knows
  the epoch without any shared state: persistent workers hold a copy of the dataset made before
  the first epoch, so an epoch counter set on the dataset would never reach them;
* :class:`EpochItemDataset` turns each key into its item and draws that item's random choices
  (the horizontal flip) from :func:`derive_seed` of ``(seed, epoch, index)``.

So

* a run resumed from a checkpoint at epoch ``k`` sees the same order *and the same flips* as a
  run that was never interrupted (Lightning calls ``set_epoch`` with the restored epoch), with
  any number of loader workers;
* every DDP process builds the same permutation, which is what makes sharding it correct. With
  ``use_distributed_sampler=True`` Lightning wraps a custom sampler in ``DistributedSamplerWrapper``
  *without* its own shuffling (only a ``RandomSampler`` counts as "shuffled"), materialises our
  keys on every rank, gives rank ``r`` the positions ``r, r + world_size, ...``, and forwards
  ``set_epoch`` to us. Checked against lightning 2.6 (``fabric/utilities/distributed.py`` and
  ``pytorch/trainer/connectors/data_connector.py``).

The sampler is not a distributed sampler itself and does no weighting or class balancing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["EpochIndex", "EpochItemDataset", "EpochShuffleSampler", "derive_seed"]


class EpochIndex(NamedTuple):
    """A dataset index and the epoch it is drawn for: what the training sampler yields."""

    index: int
    epoch: int


class EpochShuffleSampler(Sampler[Any]):
    """Yield a permutation of ``range(num_samples)`` that depends only on seed and epoch.

    Args:
        num_samples: Size of the dataset.
        seed: Seed of the shuffle; the same seed gives the same order every run.
        with_epoch: Yield :class:`EpochIndex` keys instead of plain indices, for an
            :class:`EpochItemDataset` that draws per-item random choices.

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
        >>> keyed = EpochShuffleSampler(5, seed=0, with_epoch=True)
        >>> keyed.set_epoch(1)
        >>> [key.index for key in keyed] == list(sampler), {key.epoch for key in keyed}
        (True, {1})
    """

    def __init__(self, num_samples: int, seed: int = 0, with_epoch: bool = False) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.with_epoch = bool(with_epoch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``. Lightning calls this before every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[Any]:
        generator = torch.Generator()
        generator.manual_seed(derive_seed(self.seed, self.epoch))
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        if self.with_epoch:
            return iter([EpochIndex(index, self.epoch) for index in order])
        return iter(order)


class EpochItemDataset(Dataset):
    """The training view of a dataset: items by :class:`EpochIndex`, with seeded random flips.

    Item ``EpochIndex(i, e)`` is item ``i`` of ``dataset``, its image (the first element, a
    ``(C, H, W)`` tensor) mirrored left-right when :func:`derive_seed` of ``("flip", seed, e, i)``
    is odd: half of the images, a different half every epoch, the same in every run. A plain
    integer key gives the item as stored, never flipped, so code that reads the training
    dataset by index (e.g. for real-image statistics) sees the images themselves.

    Args:
        dataset: Map-style dataset whose items are tuples starting with an image tensor.
        seed: Seed of the random choices (the data module's seed).
        random_flip: Flip images horizontally with probability 0.5.

    Example:
        >>> images = torch.arange(8).reshape(2, 1, 1, 4)
        >>> view = EpochItemDataset(torch.utils.data.TensorDataset(images), seed=0, random_flip=True)
        >>> flips = [bool(view[EpochIndex(0, epoch)][0][0, 0, 0] == 3) for epoch in range(8)]
        >>> any(flips) and not all(flips)  # about half of the epochs mirror image 0
        True
        >>> view[EpochIndex(0, 5)][0].equal(view[EpochIndex(0, 5)][0])  # and always the same ones
        True
        >>> view[0][0].tolist()  # a plain index: as stored
        [[[0, 1, 2, 3]]]
    """

    def __init__(self, dataset: Dataset, seed: int, random_flip: bool) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.random_flip = bool(random_flip)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | EpochIndex) -> Any:
        if not isinstance(key, EpochIndex):
            return self.dataset[key]
        item = self.dataset[key.index]
        if self.random_flip and derive_seed("flip", self.seed, key.epoch, key.index) & 1:
            item = (item[0].flip(-1), *item[1:])
        return item


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on ``parts`` (hashed, so nearby inputs don't correlate).

    Hashed rather than combined arithmetically, so that e.g. ``(seed=0, epoch=1)`` and
    ``(seed=1, epoch=0)`` never share a draw.

    Example:
        >>> derive_seed(0, 1) == derive_seed(0, 1), derive_seed(0, 1) == derive_seed(1, 0)
        (True, False)
    """
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
