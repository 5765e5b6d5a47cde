"""The zoo registry: names, pinned sha256 and commits, local folders first, Hub second, load_pretrained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _hub_server import set_offline
from _zoo_fixtures import save, tiny_gan, tiny_vae

import lightning_gen.zoo as zoo
from lightning_gen import VAE, GANModule
from lightning_gen.zoo import HashMismatchError, MissingFileError, UnknownModelError, ZooError

# Fixtures: fake_hub, no_internet (loopback Hub) and private_zoo (a temporary registry).
pytest_plugins = ("_hub_server", "_zoo_fixtures")


def test_shipped_index_registers_the_shapes_models():
    assert {"dcgan-shapes32", "vae-shapes32"} <= set(zoo.list())
    assert zoo.list() == sorted(zoo.list())
    assert zoo.info("dcgan-shapes32").class_name == "GANModule"
    assert zoo.info("vae-shapes32").class_name == "VAE"
    for name in zoo.list():
        entry = zoo.info(name)
        assert entry.dataset and entry.license and entry.description
        # Published entries pin an immutable commit and the weights' hash (the loader checks the format).
        assert entry.published <= (entry.sha256 is not None)


@pytest.mark.parametrize("name", ["dcgan-shapes32", "vae-shapes32"])
def test_the_readme_recipe_is_the_one_that_trained_the_shipped_weights(name):
    """``zoo/<name>/recipe.yaml`` (the README's command) and the packaged copy (the card's recipe) must not drift."""
    source = Path(__file__).resolve().parents[1] / "zoo" / name / "recipe.yaml"
    assert source.read_text() == (zoo.PACKAGE_MODELS_DIR / name / "recipe.yaml").read_text()


@pytest.mark.parametrize("name", ["dcgan-shapes32", "vae-shapes32"])
def test_shipped_zoo_models_sample_offline_from_the_package(name, no_internet):
    """The shipped weights are package data: they load with no network at all, verified against their pins."""
    assert zoo.local_dir(name) == zoo.PACKAGE_MODELS_DIR / name
    model = zoo.load(name)
    assert type(model).__name__ == zoo.info(name).class_name
    images = model.sample(4, seed=0)
    assert images.shape == (4, model.channels, model.image_size, model.image_size)
    assert torch.isfinite(images).all() and images.abs().max() <= 1


def test_unknown_name_suggests_close_matches(private_zoo):
    private_zoo("dcgan-shapes32", "GANModule")
    private_zoo("vae-shapes32", "VAE")
    with pytest.raises(UnknownModelError, match=r"'dcgan-shape32' is not .* Did you mean 'dcgan-shapes32'\?"):
        zoo.load("dcgan-shape32")
    with pytest.raises(UnknownModelError, match=r"Did you mean 'vae-shapes32'\?"):
        zoo.info("vae")
    with pytest.raises(UnknownModelError, match=r"model\. Registered: dcgan-shapes32, vae-shapes32"):
        zoo.info("stylegan")


def test_local_copy_loads_without_network_or_cache(private_zoo, tmp_path, no_internet):
    model = tiny_gan()
    private_zoo("tiny-gan", "GANModule", folder=save(model, tmp_path / "export"))
    loaded = zoo.load("tiny-gan")
    assert isinstance(loaded, GANModule)
    assert torch.equal(loaded.sample(4, seed=2), model.sample(4, seed=2))


def test_local_copy_with_other_weights_than_pinned_is_refused(private_zoo, tmp_path):
    folder = save(tiny_gan(), tmp_path / "export")
    private_zoo("tiny-gan", "GANModule", folder=folder, sha256="ab" * 32)
    with pytest.raises(HashMismatchError, match=r"abab.*was pinned.*reinstall the package"):
        zoo.load("tiny-gan")


def test_entry_without_exported_weights_says_how_to_export(private_zoo):
    private_zoo("future-gan", "GANModule")
    with pytest.raises(MissingFileError, match="zoo export CKPT lightning_gen/zoo/models/future-gan --zoo-name future-gan"):
        zoo.load("future-gan")


def test_index_must_pin_full_commits(private_zoo):
    private_zoo("tiny-gan", "GANModule", repo_id="org/tiny", revision="main", sha256="ab" * 32)
    with pytest.raises(ZooError, match="pins revision 'main'; it must be a full commit hash"):
        zoo.list()


def test_entry_class_must_match_the_config(private_zoo, tmp_path):
    private_zoo("mislabelled", "GANModule", folder=save(tiny_vae(), tmp_path / "vae", samples=False))
    with pytest.raises(zoo.ConfigMismatchError, match="holds a VAE, not a GANModule"):
        zoo.load("mislabelled")


def test_published_model_downloads_the_pinned_commit_and_checks_its_hash(private_zoo, fake_hub, tmp_path):
    model = tiny_gan(seed=0)
    digest = zoo.sha256_file(save(model, tmp_path / "export", samples=False) / "model.safetensors")
    commit = model.push_to_hub("org/tiny-gan")
    tiny_gan(seed=1).push_to_hub("org/tiny-gan")  # main moves on; the zoo stays on its pin
    private_zoo("tiny-gan", "GANModule", repo_id="org/tiny-gan", revision=commit.oid, sha256=digest)
    assert zoo.local_dir("tiny-gan") is None

    loaded = zoo.load("tiny-gan")
    assert torch.equal(loaded.sample(4, seed=0), model.sample(4, seed=0))

    raw = json.loads(private_zoo.index_path.read_text())
    raw["models"][0]["sha256"] = "cd" * 32
    private_zoo.index_path.write_text(json.dumps(raw))
    with pytest.raises(HashMismatchError, match=r"Hub repository org/tiny-gan.*cdcd.*was pinned"):
        zoo.load("tiny-gan")
    with pytest.raises(HashMismatchError, match=r"zoo model 'tiny-gan' from org/tiny-gan@.*cdcd.*was pinned"):
        zoo.pull("tiny-gan")


def test_published_model_loads_offline_once_cached(private_zoo, fake_hub, tmp_path, monkeypatch):
    model = tiny_vae()
    commit = model.push_to_hub("org/tiny-vae")
    digest = zoo.sha256_file(save(model, tmp_path / "export", samples=False) / "model.safetensors")
    private_zoo("tiny-vae", "VAE", repo_id="org/tiny-vae", revision=commit.oid, sha256=digest)
    snapshot = zoo.pull("tiny-vae")
    assert {"config.json", "model.safetensors", "README.md", "samples.png"} <= {p.name for p in snapshot.iterdir()}

    fake_hub.stop()
    set_offline(monkeypatch)
    loaded = zoo.load("tiny-vae")
    assert isinstance(loaded, VAE) and torch.equal(loaded.sample(3, seed=1), model.sample(3, seed=1))


def test_load_pretrained_accepts_folders_zoo_names_and_repo_ids(private_zoo, fake_hub, tmp_path):
    gan, vae = tiny_gan(), tiny_vae()
    gan_folder = save(gan, tmp_path / "gan", samples=False)
    private_zoo("tiny-gan", "GANModule", folder=gan_folder)
    vae.push_to_hub("org/tiny-vae")

    assert torch.equal(zoo.load_pretrained(gan_folder).sample(2, seed=0), gan.sample(2, seed=0))
    assert isinstance(zoo.load_pretrained("tiny-gan"), GANModule)
    assert isinstance(zoo.load_pretrained("org/tiny-vae", revision="main"), VAE)
    with pytest.raises(UnknownModelError, match="Did you mean 'tiny-gan'"):
        zoo.load_pretrained("tiny-gam")
    with pytest.raises(ValueError, match="pinned"):
        zoo.load_pretrained("tiny-gan", revision="main")


def test_extra_zoo_folders_come_from_the_environment(private_zoo, tmp_path, monkeypatch):
    model = tiny_vae()
    entry = private_zoo("tiny-vae", "VAE", folder=save(model, tmp_path / "export", samples=False))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (private_zoo.zoo_dir / "tiny-vae").rename(mirror / "tiny-vae")
    assert zoo.local_dir("tiny-vae") is None
    monkeypatch.setenv(zoo.ZOO_DIR_ENV, str(mirror))
    assert zoo.local_dir("tiny-vae") == mirror / "tiny-vae"
    assert zoo.load("tiny-vae", source="local").hparams.latent_dim == 8
    assert entry["sha256"] == zoo.sha256_file(mirror / "tiny-vae" / "model.safetensors")


def test_sample_cli_draws_a_zoo_model_without_network(private_zoo, tmp_path, no_internet):
    from lightning_gen.cli.sample import main as sample_main

    private_zoo("tiny-gan", "GANModule", folder=save(tiny_gan(), tmp_path / "export", samples=False))
    out = tmp_path / "grid.png"
    assert sample_main(["--model", "tiny-gan", "--n", "64", "--out", str(out), "--seed", "0", "--device", "cpu"]) == 0
    from PIL import Image

    assert Image.open(out).size == (8 * 18 + 2, 8 * 18 + 2)  # 8x8 grid of 16 px images with 2 px padding


@pytest.mark.parametrize(("name", "cls"), [("dcgan-shapes32", GANModule), ("vae-shapes32", VAE)])
def test_from_pretrained_takes_a_zoo_name_offline(name, cls, no_internet, monkeypatch):
    set_offline(monkeypatch)
    model = cls.from_pretrained(name)
    assert type(model) is cls and not model.training
    assert torch.equal(model.sample(3, seed=0), zoo.load(name).sample(3, seed=0))


def test_from_pretrained_with_a_zoo_name_checks_the_pin_and_the_class(private_zoo, tmp_path, no_internet):
    private_zoo("tiny-gan", "GANModule", save(tiny_gan(), tmp_path / "export", samples=False))
    assert isinstance(GANModule.from_pretrained("tiny-gan"), GANModule)
    with pytest.raises(ValueError, match="holds a GANModule, not a VAE"):
        VAE.from_pretrained("tiny-gan")
    with pytest.raises(ValueError, match="pinned to one commit; do not pass revision='main'"):
        GANModule.from_pretrained("tiny-gan", revision="main")
    (zoo.PACKAGE_MODELS_DIR / "tiny-gan" / "model.safetensors").write_bytes(b"not the pinned weights")
    with pytest.raises(HashMismatchError, match="was pinned"):
        GANModule.from_pretrained("tiny-gan")


def test_from_pretrained_with_an_unknown_name_fails_in_one_line_naming_the_zoo(private_zoo, no_internet):
    with pytest.raises(MissingFileError) as raised:
        GANModule.from_pretrained("dcgan-shapes")  # no Hub request: a name without ORG/ is no repository id
    message = str(raised.value)
    assert "\n" not in message and "lightning_gen.zoo.load(NAME)" in message and "'dcgan-shapes'" in message


def test_other_packages_register_names_through_the_same_hook(tmp_path, monkeypatch, no_internet):
    import sys
    import types

    import lightning_gen.hub as hub

    folder = save(tiny_vae(), tmp_path / "theirs", samples=False)
    registry = types.ModuleType("their_registry")
    registry.resolve = lambda name: ({"path": str(folder), "revision": None}, None) if name == "their-vae" else None
    monkeypatch.setitem(sys.modules, "their_registry", registry)
    monkeypatch.setattr(hub, "BUILTIN_NAME_REGISTRIES", (*hub.BUILTIN_NAME_REGISTRIES, "their_registry:resolve"))
    assert isinstance(VAE.from_pretrained("their-vae"), VAE)
    assert hub.resolve_registered_name("dcgan-shapes32") is not None  # the zoo still answers first


def test_shipped_digits_gan_draws_the_requested_digits(no_internet):
    """The card's claim in small: the zoo's conditional digits GAN draws the digit it is asked for."""
    from lightning_gen.data import DigitsDataset
    from lightning_gen.metrics import evaluate_digits

    model = zoo.load("dcgan-digits32")
    assert model.num_classes == 10 and (model.channels, model.image_size) == (1, 32)
    result = evaluate_digits(DigitsDataset("test"), model, num_samples=500, use_cache=False)
    # The card measured 0.995 on 10,000 samples; 500 samples keep it above 0.97 with a wide margin of sampling noise.
    assert result.conditional_accuracy >= 0.97 and result.class_coverage == 1.0
