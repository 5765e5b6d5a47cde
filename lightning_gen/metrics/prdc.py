"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020) on features.

All four compare k-nearest-neighbour balls around the feature vectors (k = 3 as in both papers). For real features
``X`` (N of them) and generated features ``Y`` (M), with ``r(x)`` the distance from ``x`` to its k-th nearest other
point of its own set:

- precision = share of ``y`` within ``r(x)`` of some real ``x`` (``d <= r``, torch-fidelity's and the paper's code);
- recall = share of ``x`` within ``r(y)`` of some generated ``y`` (``d <= r``);
- density = ``1 / (k M)`` times the number of pairs with ``d(x, y) < r(x)`` (the ``prdc`` package's formula);
- coverage = share of real ``x`` whose nearest ``y`` is closer than ``r(x)`` (``<``, as ``prdc``).

Distances are computed on the features' device in float64, tile by tile (``tile_size`` x ``tile_size`` at a time),
so memory stays bounded whatever N and M: 50k x 50k never materialises the 20 GB distance matrix. Under
``torch.distributed`` the feature states are gathered (concatenated in rank order) before computing, so every
process gets the values of the whole set.

Not here: feature extraction and images; see ``evaluator.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_gen.metrics.statistics import _RealAndFakeFeatures

__all__ = ["PrecisionRecallDensityCoverage", "knn_radii", "prdc_from_features"]


def knn_radii(features: Tensor, k: int = 3, tile_size: int = 4096) -> Tensor:
    """Distance from each row to its k-th nearest *other* row (float64, shape (N,)).

    The point itself is at distance 0 and is skipped (the (k+1)-th smallest distance is taken), as in
    torch-fidelity and the ``prdc`` package.

    Example:
        >>> import torch
        >>> knn_radii(torch.tensor([[0.0], [1.0], [3.0]]), k=1).tolist()
        [1.0, 1.0, 2.0]
    """
    count = features.shape[0]
    if count <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} samples, got {count}; evaluate more images.")
    features = features.double()
    radii = []
    for rows in features.split(tile_size):
        nearest = None  # the k + 1 smallest distances seen so far, per row
        for columns in features.split(tile_size):
            distances = torch.cdist(rows, columns)
            candidates = distances if nearest is None else torch.cat([nearest, distances], dim=1)
            nearest = candidates.topk(min(k + 1, candidates.shape[1]), dim=1, largest=False).values
        radii.append(nearest[:, k])
    return torch.cat(radii)


def prdc_from_features(real: Tensor, fake: Tensor, k: int = 3, tile_size: int = 4096) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` features (see the module docstring).

    Args:
        real: (N, d) real features.
        fake: (M, d) generated features.
        k: Neighbourhood size (3 in both papers).
        tile_size: Rows and columns of each distance tile; memory is ``8 * tile_size**2`` bytes per tile.

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as Python floats.

    Example:
        >>> import torch
        >>> x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
        >>> values = prdc_from_features(x, x.clone())
        >>> values["precision"], values["recall"], values["coverage"]
        (1.0, 1.0, 1.0)
    """
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"Expected real (N, d) and fake (M, d) features, got {tuple(real.shape)} and {tuple(fake.shape)}.")
    real, fake = real.double(), fake.double()
    real_radii = knn_radii(real, k, tile_size)
    fake_radii = knn_radii(fake, k, tile_size)

    # One pass over (generated x real) distance tiles serves all four: along rows, the real balls each generated
    # sample falls in (precision: any, <=; density: how many, <); along columns, whether a real sample falls in
    # any generated ball (recall, <=) and its nearest generated sample (coverage).
    fake_in_any_real_ball = torch.zeros(fake.shape[0], dtype=torch.bool, device=fake.device)
    real_balls_per_fake = torch.zeros(fake.shape[0], dtype=torch.float64, device=fake.device)
    real_in_any_fake_ball = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    nearest_fake = torch.full((real.shape[0],), float("inf"), dtype=torch.float64, device=real.device)
    for row in range(0, fake.shape[0], tile_size):
        rows = slice(row, row + tile_size)
        for column in range(0, real.shape[0], tile_size):
            columns = slice(column, column + tile_size)
            distances = torch.cdist(fake[rows], real[columns])
            radii = real_radii[columns]
            fake_in_any_real_ball[rows] |= (distances <= radii).any(dim=1)
            real_balls_per_fake[rows] += (distances < radii).sum(dim=1)
            real_in_any_fake_ball[columns] |= (distances <= fake_radii[rows, None]).any(dim=0)
            nearest_fake[columns] = torch.minimum(nearest_fake[columns], distances.min(dim=0).values)

    return {
        "precision": fake_in_any_real_ball.double().mean().item(),
        "recall": real_in_any_fake_ball.double().mean().item(),
        "density": (real_balls_per_fake.sum() / (k * fake.shape[0])).item(),
        "coverage": (nearest_fake < real_radii).double().mean().item(),
    }


class PrecisionRecallDensityCoverage(_RealAndFakeFeatures):
    """Precision, recall, density and coverage as a torchmetrics ``Metric`` fed with features.

    Keeps every real and generated feature vector (float32, ``4 * d`` bytes each; 8 KiB per image with Inception),
    concatenated across processes in rank order. Real features survive :meth:`reset`.

    Args:
        num_features: Feature dimension d.
        k: Neighbourhood size (standard: 3).
        tile_size: Distance tile side (memory ``8 * tile_size**2`` bytes on the device per tile).
        **kwargs: Passed to ``torchmetrics.Metric``.

    Example:
        >>> import torch
        >>> metric = PrecisionRecallDensityCoverage(num_features=2)
        >>> metric.update(torch.randn(20, 2), real=True)
        >>> metric.update(torch.randn(20, 2), real=False)
        >>> sorted(metric.compute())
        ['coverage', 'density', 'precision', 'recall']
    """

    higher_is_better = True

    def __init__(self, num_features: int, k: int = 3, tile_size: int = 4096, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, value in (("k", k), ("tile_size", tile_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}; the papers use k=3.")
        self.k, self.tile_size = k, tile_size
        self.counts = (0, 0)  # (n_real, n_fake) seen by the last compute
        self._feature_dims = {"real_features": num_features, "fake_features": num_features}
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, features: Tensor, real: bool) -> None:
        """Add a batch of features (N, d) to the real or the generated side."""
        (self.real_features if real else self.fake_features).append(features.float())

    def compute(self) -> dict[str, float]:
        """The four values over everything added (on all processes)."""
        real, fake = self._features("real_features"), self._features("fake_features")
        self.counts = (real.shape[0], fake.shape[0])
        return prdc_from_features(real, fake, self.k, self.tile_size)
