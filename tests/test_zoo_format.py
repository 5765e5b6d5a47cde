"""The Hub folder format: save_pretrained / from_pretrained on local folders, strict loading, the card."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
import yaml
from _zoo_fixtures import edit_config, rewrite_weights, save, tiny_gan, tiny_vae
from huggingface_hub import ModelHubMixin
from huggingface_hub.errors import EntryNotFoundError, SafetensorsParsingError
from safetensors import safe_open

from lightning_gen import VAE, GANModule
from lightning_gen._base import GenerativeModule
from lightning_gen._files import sha256_file
from lightning_gen.hub import (
    META_KEY,
    CardInfo,
    ConfigMismatchError,
    CorruptedWeightsError,
    HashMismatchError,
    MetricResult,
    MissingFileError,
    WeightsMismatchError,
)
from lightning_gen.networks import DCGANGenerator


def _constructor_args(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def test_the_modules_use_huggingface_hubs_own_mixin():
    assert issubclass(GANModule, ModelHubMixin) and issubclass(VAE, ModelHubMixin)
    info = GANModule._hub_mixin_info.model_card_data
    assert info.library_name == "lightning-gen" and "model_hub_mixin" in info.tags and "lightning-gen" in info.tags
    for name in ("force_download", "token", "cache_dir", "local_files_only", "revision"):
        assert inspect.signature(GANModule.from_pretrained).parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    push = inspect.signature(GANModule.push_to_hub).parameters
    assert push["private"].default is None and {"branch", "create_pr", "token", "delete_patterns"} <= set(push)
    # Our own errors extend huggingface_hub's where it has one, so `except EntryNotFoundError` catches ours too.
    assert issubclass(MissingFileError, EntryNotFoundError) and issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(CorruptedWeightsError, SafetensorsParsingError)


def test_save_pretrained_writes_config_weights_card_and_samples(tmp_path):
    model = tiny_gan()
    assert model.save_pretrained(tmp_path / "gan") is None  # as ModelHubMixin.save_pretrained
    folder = tmp_path / "gan"

    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    config = json.loads((folder / "config.json").read_text())
    meta = config.pop(META_KEY)
    assert meta["library_version"] == __import__("lightning_gen").__version__
    assert meta["class_name"] == "GANModule" and meta["format_version"] == 2
    # Flat constructor arguments, as PyTorchModelHubMixin writes them: every plain hyper-parameter, no objects.
    from lightning_gen.hub import RUNTIME_ARGUMENTS

    # Every constructor argument but how to run it (compile, channels_last): a downloaded model starts plain.
    assert set(config) == {k for k in model.hparams if k in _constructor_args(GANModule)} - set(RUNTIME_ARGUMENTS)
    assert not {"generator", "discriminator", "g_optimizer", "d_optimizer"} & set(config)
    assert config["betas_g"] == [0.5, 0.999] and config["ema_decay"] == 0.9 and config["width"] == 8
    assert meta["data"]["image_size"] == 16 and meta["data"]["channels"] == 3
    assert meta["data"]["model_range"] == [-1.0, 1.0] and "127.5" in meta["data"]["from_uint8"]
    assert meta["weights"]["sha256"] == sha256_file(folder / "model.safetensors")
    assert meta["weights"]["sampling_network"] == "generator_ema"

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    expected = {f"generator.{k}" for k in model.generator.state_dict()}
    expected |= {f"generator_ema.{k}" for k in model.generator_ema.module.state_dict()}
    assert keys == expected  # inference only: no discriminator, no optimizer state, no sample-grid buffers


def test_saving_is_byte_reproducible(tmp_path):
    # The zoo pins sha256s: exporting the same weights twice must not change them.
    model = tiny_gan()
    first = save(model, tmp_path / "a")
    second = save(model, tmp_path / "b")
    for name in ("config.json", "model.safetensors", "README.md", "samples.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.parametrize("make", [tiny_gan, tiny_vae], ids=["gan", "vae"])
def test_folder_round_trip_gives_identical_samples_and_weights(tmp_path, make):
    model = make()
    model.save_pretrained(tmp_path / "m", samples=False)
    loaded = type(model).from_pretrained(tmp_path / "m")
    generic = GenerativeModule.from_pretrained(tmp_path / "m")  # the base builds the class config.json names

    assert type(loaded) is type(model) and type(generic) is type(model) and not loaded.training
    assert dict(loaded.hparams) == {k: v for k, v in model.hparams.items() if k in loaded.hparams}
    for name, net in model.inference_networks().items():
        other = loaded.inference_networks()[name].state_dict()
        assert all(torch.equal(t, other[k]) for k, t in net.state_dict().items()), name
    torch.testing.assert_close(loaded.sample(6, seed=3), model.sample(6, seed=3), rtol=0, atol=0)


def test_gan_keeps_raw_and_ema_generators_as_two_variants(tmp_path):
    model = tiny_gan()
    model.save_pretrained(tmp_path / "m", samples=False)
    loaded = GANModule.from_pretrained(tmp_path / "m")
    raw_before = next(model.generator.parameters())
    ema_before = next(model.generator_ema.module.parameters())
    assert not torch.equal(raw_before, ema_before)  # the fixture makes them differ
    assert torch.equal(next(loaded.generator.parameters()), raw_before)
    assert torch.equal(next(loaded.generator_ema.module.parameters()), ema_before)
    assert isinstance(loaded.hparams.betas_g, tuple)  # JSON lists are turned back into tuples


def test_model_card_front_matter_parses_with_model_index(tmp_path):
    from huggingface_hub import ModelCard

    card = CardInfo(
        dataset="shapes32",
        license="apache-2.0",
        metrics=(
            MetricResult("fid", 41.25, protocol={"num_samples": 2048, "reference": "train split"}),
            MetricResult("is", reason="Inception weights unavailable offline"),
        ),
        recipe="model:\n  class_path: lightning_gen.GANModule\n",
        repo_id="org/tiny-gan",
    )
    folder = save(tiny_gan(), tmp_path / "m", model_card_kwargs=card.as_kwargs())
    text = (folder / "README.md").read_text()

    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "lightning-gen"
    assert "lightning-gen" in front["tags"] and "gan" in front["tags"]
    assert front["datasets"] == ["shapes32"] and front["license"] == "apache-2.0"
    metrics = [m for result in front["model-index"][0]["results"] for m in result["metrics"]]
    assert [(m["type"], m["value"]) for m in metrics] == [("fid", 41.25)]  # unmeasured metrics get no number
    assert metrics[0]["args"] == {"num_samples": 2048, "reference": "train split"}

    assert "not measured: Inception weights unavailable offline" in text
    assert 'GANModule.from_pretrained("org/tiny-gan")' in text
    assert "![64 samples drawn with seed 0](samples.png)" in text
    assert "class_path: lightning_gen.GANModule" in text
    assert "Review a downloaded recipe before running it" in text  # LightningCLI instantiates what it names
    # huggingface_hub's own parser reads the same results back.
    parsed = ModelCard.load(folder / "README.md")
    assert [(r.metric_type, r.metric_value) for r in parsed.data.eval_results] == [("fid", 41.25)]


def test_metric_result_rejects_invented_or_unknown_values():
    with pytest.raises(ValueError, match="finite"):
        MetricResult("fid", float("nan"))
    with pytest.raises(ValueError, match="fid"):
        MetricResult("accuracy", 1.0)
    with pytest.raises(ValueError, match="say why it was not measured"):
        MetricResult("kid")


def test_recipe_next_to_the_weights_goes_into_the_card(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "recipe.yaml").write_text("trainer:\n  max_steps: 7\n")
    tiny_vae().save_pretrained(folder, samples=False)
    assert "max_steps: 7" in (folder / "README.md").read_text()
    assert (folder / "recipe.yaml").read_text() == "trainer:\n  max_steps: 7\n"  # kept untouched


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda s: {k: v for k, v in s.items() if k != "generator.net.0.weight"},
            r"missing from the file: generator\.net\.0\.weight",
        ),
        (lambda s: {**s, "discriminator.extra": torch.zeros(1)}, "not in the model: discriminator.extra"),
    ],
    ids=["missing-key", "unexpected-key"],
)
def test_loading_is_strict_about_keys(tmp_path, mutate, message):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    rewrite_weights(folder, mutate)
    with pytest.raises(WeightsMismatchError, match=message):
        GANModule.from_pretrained(folder)


def test_loading_is_strict_about_shapes(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    edit_config(folder, lambda c: c.__setitem__("width", 16))  # config no longer matches the weights
    expected = r"shape mismatch: generator\.net\.0\.weight: file \(8, 16, 4, 4\) vs model \(8, 32, 4, 4\)"
    with pytest.raises(WeightsMismatchError, match=expected):
        GANModule.from_pretrained(folder)


def test_config_for_another_class_is_refused(tmp_path):
    folder = save(tiny_vae(), tmp_path / "vae", samples=False)
    with pytest.raises(ConfigMismatchError, match=r"holds a VAE, not a GANModule: load it with `VAE.from_pretrained"):
        GANModule.from_pretrained(folder)
    assert isinstance(VAE.from_pretrained(folder), VAE)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.__setitem__("flux_capacitor", 1), r"passes \['flux_capacitor'\] to GANModule"),
        (lambda c: c[META_KEY].__setitem__("format_version", 99), "format 99.*pip install -U lightning-gen"),
        (lambda c: c.pop(META_KEY), "not written by lightning-gen"),
        (lambda c: c.__setitem__("loss", "l2"), "Could not build GANModule"),
        (lambda c: c[META_KEY].__setitem__("weights", ["generator"]), "malformed 'weights' entry"),
    ],
    ids=["unknown-arg", "newer-format", "other-library", "invalid-arg", "malformed-weights"],
)
def test_bad_configs_are_refused_with_the_reason(tmp_path, mutate, message):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    edit_config(folder, mutate)
    with pytest.raises(ConfigMismatchError, match=message):
        GANModule.from_pretrained(folder)


def test_truncated_weights_are_reported_as_corrupted(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptedWeightsError, match="truncated or corrupted"):
        GANModule.from_pretrained(folder)


def test_unparsable_weights_are_reported_as_corrupted_even_with_a_matching_hash(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    edit_config(folder, lambda c: c[META_KEY]["weights"].__setitem__("sha256", sha256_file(folder / "model.safetensors")))
    with pytest.raises(CorruptedWeightsError, match="not a readable safetensors file"):
        GANModule.from_pretrained(folder)


def test_pinned_sha256_is_verified(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    digest = sha256_file(folder / "model.safetensors")
    assert isinstance(GANModule.from_pretrained(folder, expected_sha256=digest), GANModule)
    with pytest.raises(HashMismatchError, match=f"{'0' * 64} was pinned"):
        GANModule.from_pretrained(folder, expected_sha256="0" * 64)


def test_missing_files_are_named(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    (folder / "model.safetensors").unlink()
    with pytest.raises(MissingFileError, match=r"no model\.safetensors"):
        GANModule.from_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(MissingFileError, match=r"no config\.json"):
        GANModule.from_pretrained(folder)
    with pytest.raises(MissingFileError, match="neither an existing folder nor a Hub repository id"):
        GANModule.from_pretrained(tmp_path / "does" / "not" / "exist")


def test_models_with_custom_networks_cannot_be_described(tmp_path):
    model = GANModule(image_size=16, latent_dim=8, width=8, generator=DCGANGenerator(16, 3, 8, 8))
    with pytest.raises(ConfigMismatchError, match="custom generator/discriminator"):
        model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "model.safetensors").exists()  # refused before writing anything


def test_the_discriminator_is_stored_only_when_asked(tmp_path):
    model = tiny_gan()
    with torch.no_grad():
        next(model.discriminator.parameters()).add_(1.0)  # differs from a fresh init with the same seed
    folder = save(model, tmp_path / "with-d", samples=False, include_discriminator=True)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert any(k.startswith("discriminator.") for k in f.keys())
    loaded = GANModule.from_pretrained(folder)
    for key, tensor in model.discriminator.state_dict().items():
        assert torch.equal(loaded.discriminator.state_dict()[key], tensor), key
    with pytest.raises(ValueError, match="has no discriminator"):
        tiny_vae().save_pretrained(tmp_path / "vae", include_discriminator=True)


def test_saving_again_replaces_the_card_and_keeps_other_files(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False, model_card_kwargs={"dataset": "first"})
    (folder / "notes.txt").write_text("mine")
    save(tiny_gan(), folder, samples=False, model_card_kwargs={"dataset": "second"})
    assert "second" in (folder / "README.md").read_text() and "first" not in (folder / "README.md").read_text()
    assert (folder / "notes.txt").read_text() == "mine"
    with pytest.raises(TypeError, match="unknown keys \\['datset'\\]"):
        tiny_gan().save_pretrained(folder, model_card_kwargs={"datset": "typo"})
    with pytest.raises(ValueError, match="built from the module's hparams"):
        tiny_gan().save_pretrained(folder, config={"width": 8})
