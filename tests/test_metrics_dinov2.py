"""FD_DINOv2 extractors (issue 11 item 7) with a randomly initialised ViT-S/14 saved in the release layout.

The preprocessing is compared with torch-fidelity's ``FeatureExtractorDinoV2`` (the reference implementation; its
``torch.hub.load`` is pointed at the same network, since the real one would fetch code and weights online).
"""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from _metrics_fixtures import make_images

from lightning_gen.metrics import build_extractor, evaluate
from lightning_gen.metrics.dinov2 import (
    _model,
    DINOV2_RESIZE,
    DINOV2_WEIGHTS_ENV,
    MissingDinoV2WeightsError,
    hub_weights_path,
    interpolate_position_embeddings,
    resolve_dinov2_weights,
)
from lightning_gen.metrics.inception import file_sha256

NAME = "dinov2-vit-s-14"


@pytest.fixture(scope="module")
def release_weights(tmp_path_factory):
    """A seeded random ViT-S/14 at the release's 518-px grid, with the release's extra ``mask_token``."""
    import timm

    torch.manual_seed(0)
    network = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    state = {**network.state_dict(), "mask_token": torch.zeros(1, 384)}
    # timm initialises the layer scales at 1e-5, which leaves the blocks silent and every image with the same CLS
    # feature; DINOv2's own definition starts them at 1, which lets the images through.
    state = {key: torch.ones_like(value) if key.endswith(".gamma") else value for key, value in state.items()}
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    return path


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(DINOV2_WEIGHTS_ENV, raising=False)
    return tmp_path


def test_weights_are_looked_up_like_the_inception_weights(clean_env, release_weights, monkeypatch):
    with pytest.raises(MissingDinoV2WeightsError) as missing:
        resolve_dinov2_weights(NAME, download=False)
    message = str(missing.value)
    # Meta's release layout (the host is the library's constant; tests name no outside address).
    url = _model(NAME).url
    assert url.split(":", 1)[0] == "https" and url.endswith("/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth")
    assert url in message
    assert str(hub_weights_path(NAME)) in message and DINOV2_WEIGHTS_ENV in message

    calls = []

    def offline(url, destination, progress=True):
        calls.append((url, destination))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(MissingDinoV2WeightsError, match="the download failed"):
        resolve_dinov2_weights(NAME)
    assert calls == [(url, str(hub_weights_path(NAME)))]

    hub = hub_weights_path(NAME)
    hub.parent.mkdir(parents=True, exist_ok=True)  # the failed download created it
    hub.write_bytes(b"x")
    assert resolve_dinov2_weights(NAME, download=False) == hub
    monkeypatch.setenv(DINOV2_WEIGHTS_ENV, str(release_weights.parent))  # a folder holding the release file
    assert resolve_dinov2_weights(NAME) == release_weights
    monkeypatch.setenv(DINOV2_WEIGHTS_ENV, str(release_weights))
    assert resolve_dinov2_weights(NAME) == release_weights
    assert resolve_dinov2_weights(NAME, hub) == hub  # the argument comes first
    with pytest.raises(MissingDinoV2WeightsError, match="is not a file"):
        resolve_dinov2_weights(NAME, clean_env / "nope.pth")


def test_preprocessing_and_features_match_torch_fidelitys_dinov2_extractor(release_weights, monkeypatch):
    from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2

    extractor = build_extractor(NAME, weights=release_weights)
    assert extractor.name == NAME and extractor.dims == (384, 384) and extractor.resize == DINOV2_RESIZE
    assert extractor.fingerprint == file_sha256(release_weights) and extractor.standard is False
    vit = extractor.network.network
    monkeypatch.setattr(torch.hub, "load", lambda repo, model, *args, **kwargs: vit)
    reference = FeatureExtractorDinoV2(NAME, ["dinov2"])
    images = make_images("blobs", 3, size=40)  # not 224: the resize is part of what is compared
    ours = extractor(images).pool
    (theirs,) = reference(images)
    assert ours.shape == (3, 384)
    spread = ours.std(dim=0).mean()
    assert spread > 0.05  # the images give different features, so agreement is not about a constant
    assert (ours - theirs).abs().max() < 1e-4 * spread


def test_position_embeddings_follow_dinov2s_interpolation():
    generator = torch.Generator().manual_seed(0)
    release = torch.randn(1, 1 + 37 * 37, 6, generator=generator)
    ours = interpolate_position_embeddings(release, 16)
    # DINOv2's interpolate_pos_encoding for a 224-px input: scale factor (16 + 0.1) / 37, bicubic, no antialias.
    grid = release[:, 1:].reshape(1, 37, 37, 6).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic", antialias=False)
    assert torch.equal(ours[:, 0], release[:, 0])
    assert torch.allclose(ours[:, 1:], expected.permute(0, 2, 3, 1).reshape(1, 256, 6), atol=1e-6)
    # A plain resize to 16 x 16 (timm's own resampling) differs: the offset matters for released numbers.
    plain = F.interpolate(grid, size=(16, 16), mode="bicubic", antialias=False).permute(0, 2, 3, 1).reshape(1, 256, 6)
    assert not torch.allclose(ours[:, 1:], plain, atol=1e-3)


def test_fd_dinov2_through_evaluate(release_weights, tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"pos_embed": torch.zeros(1, 5, 3), "cls_token": torch.zeros(1, 1, 3)}, wrong)
    with pytest.raises(ValueError, match="does not hold dinov2-vit-s-14 weights"):
        build_extractor(NAME, weights=wrong)
    real, fake = make_images("blobs", 5, size=32), make_images("stripes", 5, size=32)
    result = evaluate(real, fake, feature_extractor=NAME, weights=release_weights, metrics=("fid", "prdc"),
                      device="cpu", batch_size=5, prdc_k=2)
    assert result.fid > 0 and result.protocol.extractor == NAME and result.protocol.resize == DINOV2_RESIZE
    assert result.protocol.weights_sha256 == file_sha256(release_weights) and result.protocol.standard is False
