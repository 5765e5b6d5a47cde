"""Precision/recall and density/coverage on features: against torch-fidelity's ``prc`` and a NumPy reference of
the definitions (issue 11 item 5). The full pipeline (images -> Inception -> P/R) is compared with torch-fidelity in
test_metrics_agreement.py; the multi-process reduction in test_metrics_ddp.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_prc import prc_features_to_metric

from lightning_gen.metrics import PrecisionRecallDensityCoverage, prdc_from_features
from lightning_gen.metrics.prdc import knn_radii


def reference_prdc(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    """Naeem et al.'s definitions as the ``prdc`` package computes them: full distance matrices, k-th neighbour
    radii with the point itself at distance 0, strict inequalities."""

    def distances(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radii(x):
        return np.partition(distances(x, x), k, axis=-1)[:, k]

    real_radii, fake_radii = radii(real), radii(fake)
    real_fake = distances(real, fake)  # (N real, M fake)
    return {
        "precision": (real_fake < real_radii[:, None]).any(axis=0).mean(),
        "recall": (real_fake < fake_radii[None, :]).any(axis=1).mean(),
        "density": (1.0 / k) * (real_fake < real_radii[:, None]).sum(axis=0).mean(),
        "coverage": (real_fake.min(axis=1) < real_radii).mean(),
    }


def features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=generator, dtype=torch.float64) * scale + shift).float()


@pytest.mark.parametrize("tile_size", [7, 4096])  # tiles smaller than either set, and one tile for all
def test_density_coverage_precision_recall_match_the_numpy_reference(tile_size):
    real, fake = features(120, 16, 0), features(90, 16, 1, shift=0.3, scale=1.2)
    ours = prdc_from_features(real, fake, k=3, tile_size=tile_size)
    expected = reference_prdc(real.double().numpy(), fake.double().numpy(), k=3)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-4), name
    # The sets overlap partly: every value is strictly between the trivial extremes, so agreement means something.
    assert 0.1 < ours["precision"] < 0.95 and 0.1 < ours["recall"] < 0.95
    assert 0.05 < ours["coverage"] < 0.95 and ours["density"] > 0.05


def test_precision_recall_match_torch_fidelity_on_the_same_features():
    real, fake = features(150, 24, 2), features(110, 24, 3, shift=0.25)
    ours = prdc_from_features(real, fake)
    # torch-fidelity's convention: features_1 is generated, features_2 real.
    for save_cpu_ram in (True, False):
        reference = prc_features_to_metric(fake, real, prc_neighborhood=3, prc_batch_size=64, save_cpu_ram=save_cpu_ram,
                                           verbose=False)
        assert ours["precision"] == pytest.approx(reference["precision"], abs=1e-4)
        assert ours["recall"] == pytest.approx(reference["recall"], abs=1e-4)
    assert 0.05 < ours["precision"] < 0.98 and 0.05 < ours["recall"] < 0.98


def test_knn_radius_skips_the_point_itself_and_needs_more_than_k_points():
    line = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(line, k=2, tile_size=2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="more than 3 samples"):
        knn_radii(line[:3], k=3)


def test_metric_state_keeps_real_features_on_reset_and_is_order_independent():
    real, fake = features(60, 8, 4), features(50, 8, 5, shift=0.2)
    metric = PrecisionRecallDensityCoverage(num_features=8, tile_size=16)
    for chunk in real.split(13):
        metric.update(chunk, real=True)
    for chunk in fake.split(9):
        metric.update(chunk, real=False)
    first = metric.compute()
    assert metric.counts == (60, 50)
    metric.reset()
    assert metric.real_state()["n"] == 60 and not metric.fake_features
    metric.update(fake[torch.randperm(50)], real=False)
    assert metric.compute() == pytest.approx(first, abs=1e-12)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        PrecisionRecallDensityCoverage(num_features=8, k=0)
