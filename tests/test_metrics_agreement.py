"""The library's FID / IS / KID / precision / recall agree with torch_fidelity.calculate_metrics on the same folders
and weights.

The real FID Inception weights cannot be downloaded here, so both sides load a weights file built from a seeded
random initialisation of the same architecture (see _metrics_fixtures.make_random_inception_weights). This is
the expensive test file: every image goes through Inception-v3 at 299 x 299 on the CPU, so image counts are small.
"""

from __future__ import annotations

import pytest
import torch
import torch_fidelity
from _metrics_fixtures import make_images, shared_random_inception_weights, write_image_folder

from lightning_gen.metrics import FeatureExtractor, MetricEvaluator, evaluate
from lightning_gen.metrics.inception import file_sha256

pytestmark = pytest.mark.timeout(900)  # Inception at 299 px on a shared 2-core CPU


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    return shared_random_inception_weights(tmp_path_factory)


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return {
        "real": write_image_folder(root / "real", make_images("blobs", 16)),
        "fake": write_image_folder(root / "fake", make_images("stripes", 16)),
    }


def test_fid_is_kid_precision_recall_agree_with_torch_fidelity(inception_weights, folders, tmp_path):
    ours = evaluate(
        folders["real"],
        folders["fake"],
        metrics=("fid", "is", "kid", "prdc"),
        weights=inception_weights,
        kid_subset_size=12,
        kid_subsets=10,
        batch_size=16,
        device="cpu",
        use_cache=False,
        num_workers=0,
    )
    # input1 is the generated side: IS is computed on it and KID draws its subsets from it first.
    reference = torch_fidelity.calculate_metrics(
        input1=str(folders["fake"]),
        input2=str(folders["real"]),
        cuda=False,
        fid=True,
        isc=True,
        kid=True,
        prc=True,
        # torch-fidelity's default P/R extractor is VGG-16 (the paper's); ours uses the FID features, so ask for them.
        feature_extractor="inception-v3-compat",
        feature_layer_prc="2048",
        feature_extractor_weights_path=str(inception_weights),
        kid_subset_size=12,
        kid_subsets=10,
        batch_size=16,
        cache=False,
        cache_root=str(tmp_path / "fidelity-cache"),
        datasets_download=False,
        save_cpu_ram=True,
        verbose=False,
    )
    fid = reference["frechet_inception_distance"]
    assert abs(ours.fid - fid) <= 1e-4 * abs(fid)
    assert abs(ours.inception_score - reference["inception_score_mean"]) <= 1e-3
    assert abs(ours.kid - reference["kernel_inception_distance_mean"]) <= 1e-4
    assert abs(ours.precision - reference["precision"]) <= 1e-4 and abs(ours.recall - reference["recall"]) <= 1e-4
    # Neither trivial: the two folders overlap only partly in feature space.
    assert 0 < ours.precision + ours.recall < 2 and ours.protocol.prdc_k == 3
    # The random network must tell the two folders apart, or agreement would prove little. (With subsets of 12 the
    # KID estimate is noisy, and may even be negative; its spread shows the kernels are far from constant.)
    assert fid > 10 and ours.inception_score > 1.3 and ours.kid_std > 1e-2
    protocol = ours.protocol
    assert (protocol.n_real, protocol.n_fake, protocol.split) == (16, 16, str(folders["real"]))
    assert protocol.weights_sha256 == file_sha256(inception_weights)
    assert protocol.standard is False  # random stand-in weights: the protocol must not call them standard
    assert protocol.kid_subset_size == 12 and protocol.is_splits == 10 and protocol.rng_seed == 2020
    assert protocol.extractor_numerics["bn_folding"] is True and protocol.extractor_numerics["device_type"] == "cpu"
    assert protocol.extractor_numerics["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert protocol.real_resize == "native size" and protocol.real_decoding.startswith("lightning-gen decoder")


def test_fid_with_itself_is_zero_and_does_not_depend_on_batch_size_or_order(inception_weights):
    evaluator = MetricEvaluator(FeatureExtractor.inception(inception_weights, download=False), fid=True)
    real, fake = make_images("blobs", 8, offset=100), make_images("stripes", 8, offset=100)
    evaluator.update_real(real)
    evaluator.update_fake(real)
    itself = evaluator.compute().fid
    evaluator.reset_fake()  # keeps the real statistics

    # FID is a function of the accumulated sums; equal sums (up to float32 feature rounding) mean equal FIDs, so
    # the comparison needs no extra (2048 x 2048 eigen-decomposition) FID computations.
    fid = evaluator.fid
    for batch in fake.split(3):
        evaluator.update_fake(batch)
    by_3 = (fid.fake_features_sum.clone(), fid.fake_features_cov_sum.clone(), int(fid.fake_features_num_samples))
    different = evaluator.compute().fid
    evaluator.reset_fake()
    evaluator.update_fake(fake.flip(0))
    assert int(fid.fake_features_num_samples) == by_3[2] == 8
    assert torch.allclose(fid.fake_features_sum, by_3[0], rtol=1e-5)
    assert torch.allclose(fid.fake_features_cov_sum, by_3[1], rtol=1e-5, atol=1e-6 * by_3[1].abs().max().item())
    # Only the ~1e-8 relative noise of ~2040 null-space eigenvalues separates a set from itself.
    assert different > 10 and abs(itself) < 1e-5 * different
