"""``lightning-gen fid`` (``lightning_gen.cli.fid.main``) on folders and GANModule / VAE checkpoints."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from _metrics_fixtures import make_images, register_tiny_extractor, shared_random_inception_weights, write_image_folder

from lightning_gen import VAE, GANModule
from lightning_gen.cli.fid import main
from lightning_gen.metrics.inception import INCEPTION_WEIGHTS_URL
from lightning_gen.metrics.sources import _DecodedFiles
from lightning_gen.sampling import load_generative_module

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {
        "weights": str(shared_random_inception_weights(tmp_path_factory)),
        "real": str(write_image_folder(root / "real", make_images("blobs", 8, size=16))),
        "fake": str(write_image_folder(root / "fake", make_images("stripes", 8, size=16))),
        "cache": str(root / "cache"),  # shared: the real folder is read once for the whole file
    }


def common(setup):
    return ["--weights", setup["weights"], "--device", "cpu", "--batch-size", "8", "--num-workers", "0",
            "--cache-dir", setup["cache"], "--is-splits", "2"]


@pytest.fixture(scope="module")
def folder_run(setup, tmp_path_factory):
    """One run on the two folders; it also leaves the real folder's statistics in the shared cache."""
    out = tmp_path_factory.mktemp("cli-out") / "fid.json"
    code = main([setup["real"], setup["fake"], "--kid-subset-size", "4", "--kid-subsets", "3", "--output", str(out),
                 *common(setup)])
    return code, out


def test_folders_give_json_with_values_and_protocol(setup, folder_run):
    code, out = folder_run
    assert code == 0
    result = json.loads(out.read_text())
    assert result["fid"] > 0 and result["inception_score"] >= 1 and result["kid"] is not None
    protocol = result["protocol"]
    assert protocol["extractor"] == "inception-v3-compat" and protocol["standard"] is False  # random weights
    assert (protocol["n_real"], protocol["n_fake"], protocol["split"]) == (8, 8, setup["real"])
    assert protocol["resize"].startswith("tf1-bilinear-299") and protocol["quantization"] == "uint8-round"
    assert protocol["kid_subset_size"] == 4 and protocol["is_splits"] == 2


def save_checkpoint(model, path):
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return str(path)


@pytest.mark.parametrize(
    "model", [GANModule(image_size=16, latent_dim=8, width=8, ema_decay=0.9), VAE(image_size=16, latent_dim=4, width=8)],
    ids=["gan", "vae"],
)
def test_checkpoints_are_restored_as_their_class(tmp_path, model):
    restored = load_generative_module(save_checkpoint(model, tmp_path / "model.ckpt"))
    assert type(restored) is type(model) and not restored.training
    assert torch.equal(restored.sample(3, seed=1), model.sample(3, seed=1))


def test_checkpoint_side_is_sampled_and_the_real_folder_comes_from_the_cache(
    setup, folder_run, tmp_path, capsys, monkeypatch
):
    checkpoint = save_checkpoint(GANModule(image_size=16, latent_dim=8, width=8), tmp_path / "model.ckpt")

    def no_reading(self, index):
        raise AssertionError("the real folder was read although its statistics are cached")

    monkeypatch.setattr(_DecodedFiles, "__getitem__", no_reading)
    code = main([setup["real"], checkpoint, "--num-samples", "8", "--no-kid", "--seed", "3", *common(setup)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["kid"] is None and result["fid"] > 0
    assert result["protocol"]["n_fake"] == 8 and result["protocol"]["sample_seed"] == 3


def test_kid_and_is_never_block_fid_on_small_folders(setup, capsys):
    # 8 images per side: KID's default subsets of 1000 and 20 IS splits cannot be had. (A tiny stand-in extractor:
    # what is tested is the flow, not the network.)
    with pytest.warns(UserWarning, match="KID subsets reduced from 1000 to 8"):
        code = main([setup["real"], setup["fake"], *common(setup), "--is-splits", "20", "--extractor",
                     register_tiny_extractor()])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["fid"] > 0 and result["kid"] is not None and result["inception_score"] is None
    protocol = result["protocol"]
    assert protocol["kid_subset_size"] == 8 and protocol["is_splits"] is None
    assert any("KID subsets reduced from 1000 to 8" in note for note in protocol["notes"])
    assert any("is skipped: 8 generated images are fewer than is_splits=20" in note for note in protocol["notes"])


def test_missing_sources_and_weights_are_reported(setup, tmp_path, capsys, monkeypatch):
    assert main([setup["real"], str(tmp_path / "missing.ckpt"), *common(setup)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main([setup["real"], "no-such-zoo-model", *common(setup)]) == 1
    assert "no-such-zoo-model" in capsys.readouterr().err

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("LIGHTNING_GEN_INCEPTION_WEIGHTS", raising=False)
    assert main([setup["real"], setup["fake"], "--no-download", "--device", "cpu", "--no-is", "--no-kid"]) == 1
    assert INCEPTION_WEIGHTS_URL in capsys.readouterr().err  # the error says where to get the file
