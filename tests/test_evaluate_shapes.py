"""``evaluate(feature_extractor="shapes")`` and ``lightning-gen fid --extractor shapes``: the FSD plus validity and
factor coverage from the same classifier pass, equal to ``evaluate_shapes``, through the real-statistics cache.

Real images are a shapes folder written by ``write_shapes_folder`` (class subfolders); "generated" ones are a
held-out set of the same data (another seed) or uniform noise. Everything is small, offline and deterministic.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lightning_gen.cli.fid import main as fid_main
from lightning_gen.data.shapes import ShapesDataset, write_shapes_folder
from lightning_gen.metrics import (
    SHAPES_CLASSIFIER_SHA256,
    MetricResult,
    compute_statistics,
    evaluate,
    evaluate_shapes,
    save_statistics,
)
from lightning_gen.metrics.protocol import VALUE_NAMES
from lightning_gen.metrics.shapes import ShapesProtocol
from lightning_gen.metrics.shapes_classifier import FACTORS, VALIDITY_THRESHOLD, ShapesFeatureNetwork
from lightning_gen.metrics.shapes_fid import FSD_NOTE, ShapesFIDResult, ShapesMetricEvaluator

pytestmark = pytest.mark.timeout(300)

NUM_REAL, NUM_FAKE, SIZE = 300, 200, 32
# Folder decoding in the main process, CPU, the same batch size as evaluate_shapes gets below.
READING = dict(device="cpu", num_workers=0, batch_size=64)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A real shapes folder (seed 0) and a held-out folder of the same data (seed 1), with class subfolders."""
    root = tmp_path_factory.mktemp("shapes-folders")
    real = write_shapes_folder(root / "real", n=NUM_REAL, image_size=SIZE, seed=0)
    fake = write_shapes_folder(root / "held-out", n=NUM_FAKE, image_size=SIZE, seed=1)
    return real, fake


@pytest.fixture(scope="module")
def held_out():
    """The held-out images as a tensor: the same pixels as the held-out folder (PNG is lossless)."""
    return ShapesDataset(num_images=NUM_FAKE, image_size=SIZE, seed=1).to_tensors()[0]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """Real statistics of the real folder, written by ``folder_result`` and read by later evaluations."""
    return tmp_path_factory.mktemp("shapes-cache")


@pytest.fixture(scope="module")
def folder_result(folders, held_out, cache_dir):
    real, _ = folders
    return evaluate(str(real), held_out, metrics=("fid",), feature_extractor="shapes", cache_dir=cache_dir, **READING)


def test_held_out_shapes_are_valid_cover_every_factor_and_match_evaluate_shapes(folder_result, held_out):
    result = folder_result
    assert isinstance(result, ShapesFIDResult) and isinstance(result.protocol, ShapesProtocol)
    assert result.validity > 0.9 and result.real_validity > 0.9
    assert result.factors["shape"].tv < 0.1 and result.factors["shape"].missing == ()
    assert all(factor.coverage == 1.0 for factor in result.factors.values())
    assert result.fsd == result.fid > 0
    protocol = result.protocol
    assert protocol.extractor == "shapes-classifier-v1" and protocol.weights_sha256 == SHAPES_CLASSIFIER_SHA256
    assert protocol.validity_threshold == VALIDITY_THRESHOLD and protocol.factors == tuple(FACTORS)
    assert (protocol.n_real, protocol.n_fake) == (NUM_REAL, NUM_FAKE) and FSD_NOTE in protocol.notes

    # The same images through evaluate_shapes: the real folder holds exactly ShapesDataset(seed=0)'s images.
    reference = evaluate_shapes(
        ShapesDataset(num_images=NUM_REAL, image_size=SIZE, seed=0), held_out, batch_size=64, device="cpu",
        use_cache=False,
    )
    # The folder is read in class-folder order, so the float64 sums add the same terms in another order.
    assert result.fsd == pytest.approx(reference.fsd, rel=1e-6)
    assert (result.validity, result.real_validity) == (reference.validity, reference.real_validity)
    assert result.factors == reference.factors
    assert result.shapes_result().scalars() == pytest.approx(reference.scalars(), rel=1e-6)
    assert (protocol.validity_threshold, protocol.value_min_share, protocol.factors) == (
        reference.protocol.validity_threshold, reference.protocol.value_min_share, reference.protocol.factors
    )


def test_pure_noise_is_invalid_and_far(folders, folder_result, cache_dir):
    real, _ = folders
    noise = torch.randint(0, 256, (NUM_FAKE, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    result = evaluate(str(real), noise, metrics=("fid",), feature_extractor="shapes", cache_dir=cache_dir, **READING)
    assert result.validity < 0.05 and result.real_validity > 0.9
    assert result.fsd > 10 * folder_result.fsd
    assert result.factors["shape"].tv > 0.3


def test_the_classifier_sees_each_image_once(held_out, monkeypatch):
    """FSD, KID and the factor counts all come from one classifier pass per image."""
    seen = []
    predict = ShapesFeatureNetwork.predict

    def counting(self, images):
        seen.append(images.shape[0])
        return predict(self, images)

    monkeypatch.setattr(ShapesFeatureNetwork, "predict", counting)
    real = ShapesDataset(num_images=100, image_size=SIZE, seed=2).to_tensors()[0]
    result = evaluate(real, held_out[:100], metrics=("fid", "kid"), feature_extractor="shapes", kid_subsets=3,
                      kid_subset_size=50, use_cache=False, device="cpu", batch_size=50)
    assert sum(seen) == 200 and result.kid is not None and result.validity > 0.9


def run_cli(capsys, *arguments: str) -> dict:
    assert fid_main(list(arguments)) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_prints_validity_and_factors_and_a_cache_hit_gives_the_same_numbers(folders, tmp_path, capsys, monkeypatch):
    real, fake = folders
    arguments = (str(real), str(fake), "--extractor", "shapes", "--num-samples", str(NUM_FAKE), "--device", "cpu",
                 "--num-workers", "0", "--cache-dir", str(tmp_path), "--no-kid", "--no-is")
    first = run_cli(capsys, *arguments)
    assert first["fsd"] == first["fid"] > 0
    assert first["validity"] > 0.9 and first["real_validity"] > 0.9
    assert set(first["factors"]) == set(FACTORS)
    assert first["factors"]["shape"]["missing"] == [] and first["shape_coverage"] == 1.0
    assert set(first["factors"]["shape"]) == {"tv", "coverage", "missing", "generated", "real"}
    assert first["protocol"]["validity_threshold"] == VALIDITY_THRESHOLD
    assert first["protocol"]["factors"] == list(FACTORS) and FSD_NOTE in first["protocol"]["notes"]
    (entry,) = tmp_path.glob("fid-*.pt")
    assert "factor_counts" in torch.load(entry, weights_only=True)  # the counts are cached with the FSD sums

    # Second run: the real side must come from the cache, never from classifying the real images again.
    def no_real_images(self, images):
        raise AssertionError("the real images were classified although their statistics are cached")

    monkeypatch.setattr(ShapesMetricEvaluator, "update_real", no_real_images)
    second = run_cli(capsys, *arguments)
    for key in ("fid", "fsd", "validity", "real_validity", "factors"):
        assert second[key] == first[key], key


def test_cli_with_the_default_is_and_kid_still_adds_the_shapes_metrics(folders, tmp_path, capsys):
    real, fake = folders
    result = run_cli(capsys, str(real), str(fake), "--extractor", "shapes", "--device", "cpu", "--num-workers", "0",
                     "--no-cache", "--kid-subsets", "5", "--kid-subset-size", "100")
    assert result["kid"] is not None and result["inception_score"] is not None
    assert result["validity"] > 0.9 and result["fsd"] == result["fid"]


def test_an_fid_only_cache_entry_of_the_same_folder_is_not_served_as_counts(folders, held_out, folder_result, tmp_path):
    real, _ = folders
    # compute_statistics caches the FID sums alone (no factor counts) for this folder and extractor.
    compute_statistics(str(real), feature_extractor="shapes", cache_dir=tmp_path, **READING)
    assert len(list(tmp_path.glob("fid-*.pt"))) == 1
    result = evaluate(str(real), held_out, metrics=("fid",), feature_extractor="shapes", cache_dir=tmp_path, **READING)
    assert len(list(tmp_path.glob("fid-*.pt"))) == 2  # an entry of its own, with the counts
    assert result.real_validity == folder_result.real_validity and result.factors == folder_result.factors


def test_a_statistics_file_as_real_gives_the_fsd_alone_and_says_why(folders, held_out, folder_result, tmp_path):
    real, _ = folders
    statistics = save_statistics(
        tmp_path / "real.npz", compute_statistics(str(real), feature_extractor="shapes", use_cache=False, **READING)
    )
    result = evaluate(str(statistics), held_out, metrics=("fid",), feature_extractor="shapes", **READING)
    assert isinstance(result, ShapesFIDResult)
    assert result.fsd == result.fid == pytest.approx(folder_result.fid, rel=1e-6)
    assert result.validity is None and result.real_validity is None and result.factors == {}
    assert result.protocol.factors == ()
    assert any("validity and factor coverage not computed" in note for note in result.protocol.notes)
    values = result.to_dict()
    assert values["fsd"] == result.fid and values["validity"] is None and values["factors"] == {}

    both = evaluate(str(statistics), str(statistics), metrics=("fid",), feature_extractor="shapes")
    assert isinstance(both, ShapesFIDResult) and both.fsd == both.fid == pytest.approx(0.0, abs=1e-6)


def test_the_json_reads_back_as_the_same_result(folder_result):
    assert ShapesFIDResult.from_dict(json.loads(folder_result.to_json())) == folder_result


class TinyExtractor(nn.Module):
    """Mean colour per channel: a custom extractor, to check other extractors keep their plain result."""

    num_features = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(2, 3))


def test_other_extractors_keep_the_plain_metric_result(held_out):
    real = ShapesDataset(num_images=50, image_size=16, seed=3).to_tensors()[0]
    result = evaluate(real, held_out[:50], metrics=("fid",), feature_extractor=TinyExtractor(), use_cache=False,
                      device="cpu")
    assert type(result) is MetricResult
    assert list(result.to_dict()) == [*VALUE_NAMES, "protocol"] and result.protocol.notes == []
