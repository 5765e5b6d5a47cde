"""The metric formulas on given features, against torch-fidelity's own functions (no network involved)."""

from __future__ import annotations

import json

import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from lightning_gen.metrics import (
    MetricResult,
    Protocol,
    StandardFID,
    StandardInceptionScore,
    StandardKID,
    frechet_distance,
)
from lightning_gen.metrics.statistics import mean_and_covariance


def features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """Post-ReLU-like features: non-negative, correlated, like Inception pool features."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=generator) / d**0.5
    return torch.relu(torch.randn(n, d, generator=generator) @ mixing + 0.3 + shift).float()


def test_frechet_distance_matches_the_general_eigensolver_reference():
    real, fake = features(300, 64, 0), features(200, 64, 1, shift=0.2)
    expected = fid_statistics_to_metric(fid_features_to_statistics(real), fid_features_to_statistics(fake), False)
    mu1, sigma1 = mean_and_covariance(real.double().sum(0), real.double().T @ real.double(), 300)
    mu2, sigma2 = mean_and_covariance(fake.double().sum(0), fake.double().T @ fake.double(), 200)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected["frechet_inception_distance"], rel=1e-6)


def test_frechet_distance_of_a_set_with_itself_is_zero_even_when_rank_deficient():
    x = features(20, 64, 2)  # 20 samples in 64 dimensions: a singular covariance
    mu, sigma = mean_and_covariance(x.double().sum(0), x.double().T @ x.double(), 20)
    # Square roots of the ~1e-16 noise eigenvalues of the null space leave ~1e-8 relative of the trace.
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * sigma.trace().item()


def feed_fid(real: torch.Tensor, fake: torch.Tensor, batch: int) -> StandardFID:
    metric = StandardFID(num_features=real.shape[1])
    for chunk in real.split(batch):
        metric.update(chunk, real=True)
    for chunk in fake.split(batch):
        metric.update(chunk, real=False)
    return metric


def test_fid_agrees_with_torch_fidelity_and_ignores_batch_size_and_order():
    real, fake = features(257, 32, 3), features(190, 32, 4, shift=0.1)
    expected = fid_statistics_to_metric(fid_features_to_statistics(real), fid_features_to_statistics(fake), False)
    value = feed_fid(real, fake, 64).compute()
    assert value.dtype == torch.float64  # torchmetrics would cast back to the features' float32
    assert value.item() == pytest.approx(expected["frechet_inception_distance"], rel=1e-6)
    # Other batch sizes and orders change only the float64 summation order (~n * eps = 3e-14 relative in the
    # sums); 257 samples in 32 dimensions give full-rank covariances, so no square root amplifies it: 1e-10 leaves
    # a margin of ~100x for the cancellation in FID and any LAPACK kernel.
    assert feed_fid(real, fake, 7).compute().item() == pytest.approx(value.item(), rel=1e-10)
    permuted = feed_fid(real[torch.randperm(257)], fake[torch.randperm(190)], 50).compute()
    assert permuted.item() == pytest.approx(value.item(), rel=1e-10)


def test_fid_memory_does_not_grow_with_the_number_of_samples():
    metric = StandardFID(num_features=16)
    state_bytes = lambda: sum(t.numel() * t.element_size() for t in metric.metric_state.values())  # noqa: E731
    metric.update(features(10, 16, 5), real=False)
    before = state_bytes()
    for seed in range(20):
        metric.update(features(100, 16, seed), real=False)
    assert state_bytes() == before
    assert int(metric.fake_features_num_samples) == 2010


def test_fid_real_statistics_survive_reset_and_round_trip_through_real_state():
    real, fake = features(100, 8, 6), features(80, 8, 7, shift=0.3)
    metric = feed_fid(real, fake, 32)
    value = metric.compute().item()
    state = metric.real_state()
    metric.reset()  # forgets the generated side only
    assert int(metric.real_features_num_samples) == 100 and int(metric.fake_features_num_samples) == 0
    fresh = StandardFID(num_features=8)
    fresh.load_real_state(state)
    fresh.update(fake, real=False)
    assert fresh.compute().item() == pytest.approx(value, rel=1e-12)
    with pytest.raises(ValueError, match="another extractor"):
        StandardFID(num_features=9).load_real_state(state)


@pytest.mark.parametrize("count", [50, 53])  # 53: splits of unequal size, where torch.chunk would differ
def test_inception_score_matches_torch_fidelity_splits_and_seed(count):
    logits = features(count, 40, 8) * 6
    expected = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    metric = StandardInceptionScore(num_logits=40)
    for chunk in logits.split(16):
        metric.update(chunk)
    mean, std = metric.compute()
    assert mean.item() == pytest.approx(expected["inception_score_mean"], rel=1e-9)
    assert std.item() == pytest.approx(expected["inception_score_std"], rel=1e-9)
    assert mean.item() > 1.2  # the logits are informative, so the comparison means something
    assert metric.count == count


def test_inception_score_needs_a_sample_per_split():
    metric = StandardInceptionScore(num_logits=5)
    metric.update(torch.randn(9, 5))
    with pytest.raises(ValueError, match="at least splits=10 samples"):
        metric.compute()


def test_kid_matches_torch_fidelity_subsets_and_keeps_real_features_on_reset():
    real, fake = features(90, 48, 9), features(70, 48, 10, shift=0.15)
    expected = kid_features_to_metric(fake, real, kid_subsets=20, kid_subset_size=30, verbose=False, rng_seed=2020)
    metric = StandardKID(num_features=48, subsets=20, subset_size=30)
    for chunk in real.split(25):
        metric.update(chunk, real=True)
    for chunk in fake.split(25):
        metric.update(chunk, real=False)
    mean, std = metric.compute()
    assert mean.item() == pytest.approx(expected["kernel_inception_distance_mean"], abs=1e-6)
    assert std.item() == pytest.approx(expected["kernel_inception_distance_std"], abs=1e-6)
    assert abs(mean.item()) > 1e-3
    metric.reset()
    assert metric.real_state()["n"] == 90 and not metric.fake_features
    metric.update(fake, real=False)
    assert metric.compute()[0].item() == pytest.approx(mean.item(), rel=1e-12)


def test_kid_with_fewer_samples_than_the_subset_size_uses_the_largest_subsets_and_says_so():
    real, fake = features(60, 4, 11), features(40, 4, 12, shift=0.2)
    metric = StandardKID(num_features=4, subset_size=50, subsets=5)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with pytest.warns(UserWarning, match="KID subsets reduced from 50 to 40"):
        mean, std = metric.compute()
    expected = kid_features_to_metric(fake, real, kid_subsets=5, kid_subset_size=40, verbose=False, rng_seed=2020)
    assert mean.item() == pytest.approx(expected["kernel_inception_distance_mean"], abs=1e-6)
    assert metric.subset_size_used == 40 and "reduced from 50 to 40" in metric.note
    tiny = StandardKID(num_features=4, subset_size=50)
    tiny.update(real, real=True)
    tiny.update(fake[:1], real=False)
    with pytest.raises(ValueError, match="at least 2 samples per side"):
        tiny.compute()


def test_metric_result_and_protocol_serialise_to_json_and_back():
    protocol = Protocol(
        extractor="inception-v3-compat", weights_sha256="0" * 64, standard=True, resize="tf1", n_real=10, n_fake=12,
        split="train", is_splits=10, versions={"torchmetrics": "1.9.0"},
    )
    result = MetricResult(protocol=protocol, fid=12.5, inception_score=3.0, inception_score_std=0.1)
    data = json.loads(result.to_json())
    assert data["fid"] == 12.5 and data["kid"] is None and data["protocol"]["n_fake"] == 12
    assert MetricResult.from_dict(data) == result

