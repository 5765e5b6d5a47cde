"""Where the Inception weights come from, and the feature-extractor wrapper (with cheap stand-in networks)."""

from __future__ import annotations

import hashlib
import urllib.error

import pytest
import torch
from _metrics_fixtures import TinyFeatures, make_images
from torch import nn

from lightning_gen.metrics import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_FILENAME,
    INCEPTION_WEIGHTS_URL,
    FeatureExtractor,
    MissingInceptionWeightsError,
    resolve_inception_weights,
)
from lightning_gen.metrics import features as features_module
from lightning_gen.metrics.inception import OFFICIAL_WEIGHTS_SHA256, build_inception, file_sha256, hub_weights_path


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    return tmp_path


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


def test_argument_then_environment_then_hub_cache(clean_env, monkeypatch):
    explicit, from_env = touch(clean_env / "a.pth"), touch(clean_env / "b.pth")
    hub = touch(hub_weights_path())
    assert hub == clean_env / "torch-home" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILENAME
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(from_env))
    assert resolve_inception_weights(explicit) == explicit
    assert resolve_inception_weights() == from_env
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV)
    assert resolve_inception_weights(download=False) == hub


def test_a_wrong_explicit_path_or_variable_is_an_error_not_a_fallback(clean_env, monkeypatch):
    touch(hub_weights_path())
    with pytest.raises(MissingInceptionWeightsError, match="weights='/nope.pth' is not a file"):
        resolve_inception_weights("/nope.pth")
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, "/also-nope.pth")
    with pytest.raises(MissingInceptionWeightsError, match=f"{INCEPTION_WEIGHTS_ENV}='/also-nope.pth'"):
        resolve_inception_weights()


def test_missing_offline_error_names_the_file_its_url_and_where_to_put_it(clean_env):
    with pytest.raises(MissingInceptionWeightsError) as error:
        resolve_inception_weights(download=False)
    message = str(error.value)
    for expected in (INCEPTION_WEIGHTS_FILENAME, INCEPTION_WEIGHTS_URL, str(hub_weights_path()), INCEPTION_WEIGHTS_ENV):
        assert expected in message


def test_download_goes_to_the_hub_cache_and_failures_are_explained(clean_env, monkeypatch):
    calls = []

    def offline(url, destination, progress=True):
        calls.append((url, destination))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(MissingInceptionWeightsError, match="the download failed") as error:
        resolve_inception_weights()
    assert INCEPTION_WEIGHTS_URL in str(error.value)
    assert calls == [(INCEPTION_WEIGHTS_URL, str(hub_weights_path()))]

    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, destination, progress=True: touch(hub_weights_path()))
    assert resolve_inception_weights() == hub_weights_path()


def test_weights_files_that_are_not_inception_state_dicts_are_rejected(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Could not read .*garbage.pth"):
        build_inception(garbage)
    other = tmp_path / "other.pth"
    torch.save(nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(ValueError, match="not an Inception-v3 state dict"):
        build_inception(other)


def test_official_means_the_full_sha256_not_the_prefix_in_the_file_name(tmp_path_factory, monkeypatch):
    from _metrics_fixtures import shared_random_inception_weights

    weights = shared_random_inception_weights(tmp_path_factory)
    digest = file_sha256(weights)
    # (The real stand-in file's standard=False is checked by the agreement test.) A file sharing only the first 8 hex digits (all torch.hub's file name promises) is not official.
    monkeypatch.setattr(features_module, "OFFICIAL_WEIGHTS_SHA256", digest[:8] + "0" * 56)
    assert FeatureExtractor.inception(weights).standard is False
    monkeypatch.setattr(features_module, "OFFICIAL_WEIGHTS_SHA256", digest)
    extractor = FeatureExtractor.inception(weights)
    assert extractor.standard is True and extractor.fingerprint == digest
    assert len(OFFICIAL_WEIGHTS_SHA256) == 64 and OFFICIAL_WEIGHTS_SHA256.startswith("6726825d")


def test_numerics_record_what_changes_the_features(monkeypatch):
    extractor = FeatureExtractor.custom(TinyFeatures())
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        numerics = extractor.numerics()
    finally:
        torch.set_float32_matmul_precision(previous)
    assert numerics == {"dtype": "float32", "device_type": "cpu", "float32_matmul_precision": "high"}


def test_file_sha256(tmp_path):
    path = touch(tmp_path / "w.pth")
    assert file_sha256(path) == hashlib.sha256(b"weights").hexdigest()


def test_grayscale_is_replicated_to_three_channels():
    extractor = FeatureExtractor.custom(TinyFeatures())
    gray = make_images("blobs", 4, size=16, channels=1)
    from_gray = extractor(gray)
    from_rgb = extractor(gray.expand(-1, 3, -1, -1).contiguous())
    assert torch.equal(from_gray.pool, from_rgb.pool)
    assert from_gray.pool.shape == (4, 30) and not from_gray.pool.is_inference()


def test_custom_extractor_inputs_and_outputs_are_checked():
    extractor = FeatureExtractor.custom(TinyFeatures())
    with pytest.raises(TypeError, match="expects uint8 images"):
        extractor(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels, got 4"):
        extractor(torch.zeros(2, 4, 8, 8, dtype=torch.uint8))
    flat = FeatureExtractor.custom(nn.Flatten(0))
    with pytest.raises(ValueError, match="must return a \\(N, d\\) tensor"):
        flat(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        FeatureExtractor.custom(lambda x: x)


def test_custom_extractor_fingerprint_follows_its_weights():
    a, b = TinyFeatures(), TinyFeatures()
    assert FeatureExtractor.custom(a).fingerprint == FeatureExtractor.custom(b).fingerprint
    with torch.no_grad():
        b.conv.weight[0, 0, 0, 0] += 1
    assert FeatureExtractor.custom(a).fingerprint != FeatureExtractor.custom(b).fingerprint
    assert FeatureExtractor.custom(a).name == "custom:TinyFeatures"
