"""`lightning-gen zoo` (export from a real Lightning checkpoint, list, show, pull, push) and HubExportCallback."""

from __future__ import annotations

import json
import pathlib

import lightning.pytorch as pl
import pytest
import torch
import yaml
from _hub_server import set_offline
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

import lightning_gen.zoo as zoo
from lightning_gen import GANModule
from lightning_gen.cli.zoo import main
from lightning_gen.hub import CardInfo
from lightning_gen.zoo.callback import HubExportCallback

# Fixtures: fake_hub, no_internet (loopback Hub) and private_zoo (a temporary registry).
pytest_plugins = ("_hub_server", "_zoo_fixtures")


class Opaque:
    """A hyper-parameter type that a weights_only load must refuse to rebuild."""


def _fit_tiny_gan(root: pathlib.Path, callbacks: list | None = None) -> tuple[GANModule, pl.Trainer]:
    torch.manual_seed(0)
    model = GANModule(image_size=16, channels=3, latent_dim=8, width=8, ema_decay=0.5, num_sample_images=4)
    images = torch.rand(8, 3, 16, 16) * 2 - 1  # already in the model's [-1, 1] range
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks or []),
    )
    trainer.fit(model, DataLoader(TensorDataset(images), batch_size=4))
    return model, trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A GANModule trained for two generator steps and its Lightning checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    model, trainer = _fit_tiny_gan(root)
    ckpt = root / "final.ckpt"
    trainer.save_checkpoint(ckpt)
    return model, ckpt


def test_export_converts_a_lightning_checkpoint(trained, tmp_path, capsys):
    model, ckpt = trained
    assert main(["export", str(ckpt), str(tmp_path / "hub")]) == 0
    assert "model.safetensors sha256" in capsys.readouterr().out

    loaded = GANModule.from_pretrained(tmp_path / "hub")
    assert torch.equal(loaded.sample(6, seed=4), model.sample(6, seed=4))
    assert model.generator_step > 0  # the weights come from real optimizer steps, not from the init
    assert json.loads((tmp_path / "hub" / "config.json").read_text())["ema_decay"] == 0.5


def test_export_reads_checkpoints_with_weights_only(trained, tmp_path, capsys):
    _, ckpt = trained
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["data_dir"] = pathlib.Path("/data/shapes")  # path objects are allowed
    torch.save(checkpoint, tmp_path / "with_path.ckpt")
    assert main(["export", str(tmp_path / "with_path.ckpt"), str(tmp_path / "ok"), "--no-samples"]) == 0

    checkpoint["hyper_parameters"]["opaque"] = Opaque()
    torch.save(checkpoint, tmp_path / "unsafe.ckpt")
    assert main(["export", str(tmp_path / "unsafe.ckpt"), str(tmp_path / "refused")]) == 1
    err = capsys.readouterr().err
    assert "will not unpickle" in err and "Opaque" in err and "add_safe_globals" in err
    assert not (tmp_path / "refused" / "model.safetensors").exists()


def test_export_and_publish_a_zoo_model_end_to_end(trained, private_zoo, fake_hub, tmp_path, capsys, monkeypatch):
    model, ckpt = trained
    private_zoo("tiny-gan", "GANModule")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  class_path: lightning_gen.GANModule\n  init_args:\n    width: 8\n")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "fid": {"value": 123.5, "protocol": {"num_samples": 64, "reference": "test fixture"}},
                "is": {"reason": "too few samples to be meaningful"},
            }
        )
    )
    target = private_zoo.zoo_dir / "tiny-gan"

    args = ["export", str(ckpt), str(target), "--zoo-name", "tiny-gan"]
    assert main([*args, "--recipe", str(recipe), "--metrics", str(metrics)]) == 0
    entry = zoo.info("tiny-gan")
    assert entry.sha256 == zoo.sha256_file(target / "model.safetensors") and not entry.published
    card = (target / "README.md").read_text()
    assert "not measured: too few samples to be meaningful" in card and "width: 8" in card
    assert (target / "recipe.yaml").is_file()

    capsys.readouterr()
    assert main(["list"]) == 0
    assert "tiny-gan" in capsys.readouterr().out.split("local")[0]

    assert main(["push", "tiny-gan", "--repo-id", "org/tiny-gan"]) == 0
    entry = zoo.info("tiny-gan")
    assert (entry.repo_id, entry.revision) == ("org/tiny-gan", fake_hub.head("org/tiny-gan"))
    assert "recipe.yaml" in fake_hub.files("org/tiny-gan")
    capsys.readouterr()
    assert main(["list"]) == 0
    assert "local+hub" in capsys.readouterr().out

    # A user without the source tree: pull into the cache, then everything works offline.
    import shutil

    shutil.rmtree(target)
    assert main(["pull", "tiny-gan"]) == 0
    assert "pulled tiny-gan into" in capsys.readouterr().out
    fake_hub.stop()
    set_offline(monkeypatch)
    assert main(["show", "tiny-gan"]) == 0
    shown = capsys.readouterr().out
    assert f"org/tiny-gan@{entry.revision}" in shown and "FID = 123.5" in shown and "16x16" in shown
    assert "Review a downloaded recipe before running it" in shown
    assert torch.equal(zoo.load("tiny-gan").sample(3, seed=0), model.sample(3, seed=0))


def test_push_a_folder_and_cli_errors(trained, fake_hub, tmp_path, capsys):
    _, ckpt = trained
    assert main(["export", str(ckpt), str(tmp_path / "hub"), "--no-samples"]) == 0
    assert main(["push", str(tmp_path / "hub"), "--repo-id", "org/folder", "--branch", "exp1"]) == 0
    assert "config.json" in fake_hub.files("org/folder", "exp1")

    capsys.readouterr()
    assert main(["show", "dcgan-shapes31"]) == 1
    assert "Did you mean 'dcgan-shapes32'" in capsys.readouterr().err
    assert main(["pull", "org/missing"]) == 1
    assert "Repository Not Found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["push", str(tmp_path / "hub")])  # --repo-id is required
    assert usage.value.code == 2


def test_callback_exports_the_best_checkpoint_and_pushes_it_with_its_card(fake_hub, tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts")
    callback = HubExportCallback(
        repo_id="org/from-training",
        card=CardInfo(dataset="noise", license="apache-2.0"),
        metric_keys={"fid": "val/fid"},
    )
    _fit_tiny_gan(tmp_path, callbacks=[checkpoint, callback])

    assert callback.export_dir == tmp_path / "hub_export"
    assert callback.commit is not None and callback.commit.oid == fake_hub.head("org/from-training")
    files = fake_hub.files("org/from-training")
    card = files["README.md"].decode()
    front = yaml.safe_load(card.split("---")[1])
    assert front["datasets"] == ["noise"] and front["library_name"] == "lightning-gen"
    assert "not measured: 'val/fid' was not logged during training" in card
    assert 'from_pretrained("org/from-training")' in card

    loaded = GANModule.from_pretrained("org/from-training")
    best = GANModule.load_from_checkpoint(checkpoint.best_model_path, weights_only=True)
    assert torch.equal(loaded.sample(4, seed=1), best.sample(4, seed=1))


def test_callback_keeps_the_export_when_the_push_fails(fake_hub, tmp_path):
    fake_hub.stop()
    callback = HubExportCallback(tmp_path / "export", repo_id="org/unreachable")
    with pytest.warns(UserWarning, match="lightning-gen zoo push .* --repo-id org/unreachable"):
        _fit_tiny_gan(tmp_path, callbacks=[callback])
    assert callback.commit is None
    assert (tmp_path / "export" / "model.safetensors").is_file()  # no checkpoint: the final weights
