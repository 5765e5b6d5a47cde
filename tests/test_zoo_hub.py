"""push_to_hub / from_pretrained against the loopback Hub with the mixin's arguments, the cache, and every Hub error."""

from __future__ import annotations

import json

import pytest
import torch
from _hub_server import FAKE_TOKEN, set_offline
from _zoo_fixtures import save, tiny_gan, tiny_vae
from huggingface_hub import constants
from huggingface_hub.errors import (
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

import lightning_gen.zoo as zoo
from lightning_gen import VAE, GANModule
from lightning_gen.hub import META_KEY, CorruptedWeightsError, MissingFileError, push_folder

# Fixtures fake_hub and no_internet: the loopback Hub.
pytest_plugins = ("_hub_server",)


def test_tests_cannot_reach_the_internet(no_internet):
    import socket

    with pytest.raises(OSError, match="tests must stay offline"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1: refused before any packet


def _empty_cache(monkeypatch, tmp_path, name: str) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / name))


def test_push_then_pull_into_an_empty_cache_gives_bit_identical_samples(fake_hub, tmp_path, monkeypatch):
    model = tiny_gan()
    commit = model.push_to_hub("org/tiny-gan", commit_message="first upload")

    files = fake_hub.files("org/tiny-gan")
    assert {"config.json", "model.safetensors", "README.md", "samples.png"} <= set(files)
    assert commit.oid == fake_hub.head("org/tiny-gan")
    assert 'from_pretrained("org/tiny-gan")' in files["README.md"].decode()  # the card names its repository
    assert not fake_hub.repos["org/tiny-gan"].private and "visibility" not in fake_hub.repos["org/tiny-gan"].create_payload

    _empty_cache(monkeypatch, tmp_path, "fresh-cache")
    loaded = GANModule.from_pretrained("org/tiny-gan")
    assert torch.equal(loaded.sample(8, seed=11), model.sample(8, seed=11))
    assert (tmp_path / "fresh-cache" / "models--org--tiny-gan").is_dir()  # downloads go to the HF cache

    downloads = [(m, p, h) for m, p, h in fake_hub.requests if "/resolve/" in p or p.startswith("/blobs/")]
    assert downloads and all("lightning-gen/" in h.get("user-agent", "") for _, _, h in downloads)
    cdn = [h for _, p, h in downloads if p.startswith("/blobs/")]
    assert cdn and all("authorization" not in h for h in cdn)  # like the real CDN redirect: no token sent


def test_push_to_a_branch_and_load_a_pinned_commit(fake_hub):
    first = tiny_vae(seed=0)
    second = tiny_vae(seed=1)
    pinned = first.push_to_hub("org/vae", branch="dev")  # the branch is created from main
    second.push_to_hub("org/vae", branch="dev")  # the branch moves on; the pinned commit must not

    assert "model.safetensors" not in fake_hub.files("org/vae", "main")
    assert torch.equal(VAE.from_pretrained("org/vae", revision=pinned.oid).sample(4, seed=0), first.sample(4, seed=0))
    assert torch.equal(VAE.from_pretrained("org/vae", revision="dev").sample(4, seed=0), second.sample(4, seed=0))


def test_create_pr_leaves_main_alone_and_the_pr_revision_loads(fake_hub):
    base, proposed = tiny_gan(seed=0), tiny_gan(seed=1)
    base.push_to_hub("org/gan")
    head = fake_hub.head("org/gan")
    commit = proposed.push_to_hub("org/gan", create_pr=True, commit_message="better weights")

    assert fake_hub.head("org/gan") == head and commit.pr_revision == "refs/pr/1"
    loaded = GANModule.from_pretrained("org/gan", revision=commit.pr_revision)
    assert torch.equal(loaded.sample(4, seed=0), proposed.sample(4, seed=0))
    assert torch.equal(GANModule.from_pretrained("org/gan").sample(4, seed=0), base.sample(4, seed=0))


def test_private_token_and_pattern_arguments_reach_the_hub(fake_hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    explicit = "hf_explicitToken0123456789abcdef"
    model = tiny_gan()
    model.push_to_hub("org/private", private=True, token=explicit, ignore_patterns=["samples.png"])

    assert fake_hub.repos["org/private"].private
    assert "samples.png" not in fake_hub.files("org/private")
    writes = [h for m, p, h in fake_hub.requests if m == "POST" and "/commit/" in p]
    assert writes and all(h["authorization"] == f"Bearer {explicit}" for h in writes)

    (tmp := fake_hub.files("org/private"))  # delete_patterns removes remote files in the same commit
    assert "README.md" in tmp
    model.push_to_hub("org/private", token=explicit, allow_patterns=["*.json"], delete_patterns=["README.md"])
    assert "README.md" not in fake_hub.files("org/private")
    loaded = GANModule.from_pretrained("org/private", token=explicit)
    assert torch.equal(loaded.sample(2, seed=0), model.sample(2, seed=0))


def test_cache_dir_local_files_only_and_force_download(fake_hub, tmp_path):
    model = tiny_gan()
    model.push_to_hub("org/cached")
    cache = tmp_path / "my-cache"
    with pytest.raises(LocalEntryNotFoundError):  # nothing in this cache yet, and not allowed to download
        GANModule.from_pretrained("org/cached", cache_dir=cache, local_files_only=True)
    GANModule.from_pretrained("org/cached", cache_dir=cache)
    assert (cache / "models--org--cached").is_dir()

    def weight_downloads() -> int:
        return sum(1 for m, p, _ in fake_hub.requests if m == "GET" and p.startswith("/blobs/"))

    before = weight_downloads()
    loaded = GANModule.from_pretrained("org/cached", cache_dir=cache, local_files_only=True)
    assert torch.equal(loaded.sample(2, seed=0), model.sample(2, seed=0)) and weight_downloads() == before
    GANModule.from_pretrained("org/cached", cache_dir=cache, force_download=True)
    assert weight_downloads() == before + 1


def test_pushing_unchanged_files_again_is_not_an_error(fake_hub):
    folder_model = tiny_gan()
    first = folder_model.push_to_hub("org/same")
    again = folder_model.push_to_hub("org/same")
    assert again.oid == first.oid  # huggingface_hub skips the empty commit and reports the head


def test_save_pretrained_can_push_as_the_mixin_does(fake_hub, tmp_path):
    url = tiny_vae().save_pretrained(tmp_path / "vae", push_to_hub=True, repo_id="org/saved-and-pushed")
    assert url.oid == fake_hub.head("org/saved-and-pushed")
    assert isinstance(VAE.from_pretrained("org/saved-and-pushed"), VAE)


def test_offline_mode_loads_what_is_cached(fake_hub, monkeypatch):
    model = tiny_gan()
    model.push_to_hub("org/cached")
    GANModule.from_pretrained("org/cached")  # fills the cache
    fake_hub.stop()
    set_offline(monkeypatch)
    loaded = GANModule.from_pretrained("org/cached")
    assert torch.equal(loaded.sample(4, seed=5), model.sample(4, seed=5))


def test_unreachable_hub_falls_back_to_the_cache(fake_hub):
    model = tiny_gan()
    commit = model.push_to_hub("org/cached")
    GANModule.from_pretrained("org/cached", revision=commit.oid)
    fake_hub.stop()  # no offline flag: the client finds out by failing to connect
    loaded = GANModule.from_pretrained("org/cached", revision=commit.oid)
    assert torch.equal(loaded.sample(4, seed=5), model.sample(4, seed=5))


def test_hub_errors_are_huggingface_hubs_own(fake_hub):
    with pytest.raises(RepositoryNotFoundError):
        GANModule.from_pretrained("org/nope")
    tiny_gan().push_to_hub("org/gan")
    with pytest.raises(RevisionNotFoundError):
        GANModule.from_pretrained("org/gan", revision="v9")
    with pytest.raises(HFValidationError):
        GANModule.from_pretrained("org/bad name!")


def test_missing_weights_in_a_repository(fake_hub, tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    (folder / "model.safetensors").unlink()
    push_folder(folder, "org/config-only")
    with pytest.raises(MissingFileError, match=r"org/config-only.*no model\.safetensors"):
        GANModule.from_pretrained("org/config-only")


def test_missing_config_in_a_repository(fake_hub, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("just notes\n")
    (tmp_path / "notes" / "last.ckpt").write_bytes(b"pickle")
    push_folder(tmp_path / "notes", "org/not-a-model")
    assert "last.ckpt" not in fake_hub.files("org/not-a-model")  # only the format's files are uploaded
    with pytest.raises(MissingFileError, match=r"org/not-a-model.*has neither config\.json"):
        GANModule.from_pretrained("org/not-a-model")


def test_corrupted_weights_on_the_hub(fake_hub, tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-100])  # truncated upload
    push_folder(folder, "org/broken")
    with pytest.raises(CorruptedWeightsError, match=r"Hub repository org/broken.*force_download"):
        GANModule.from_pretrained("org/broken")
    with pytest.raises(CorruptedWeightsError, match=r"Hub repository org/broken"):
        zoo.pull("org/broken")  # pulling checks the weights against config.json too


def test_unreachable_hub_with_nothing_cached(fake_hub):
    fake_hub.stop()
    with pytest.raises(LocalEntryNotFoundError):
        GANModule.from_pretrained("org/gan")
    with pytest.raises(Exception) as pushed:  # the HTTP stack's connection error, untranslated
        tiny_gan().push_to_hub("org/gan")
    assert "connect" in f"{type(pushed.value).__name__} {pushed.value}".lower()


def test_offline_mode_with_nothing_cached(fake_hub, monkeypatch):
    set_offline(monkeypatch)
    with pytest.raises(LocalEntryNotFoundError):
        GANModule.from_pretrained("org/gan")


def test_config_json_on_the_hub_is_the_documented_one(fake_hub):
    tiny_vae().push_to_hub("org/vae")
    config = json.loads(fake_hub.files("org/vae")["config.json"])
    assert config[META_KEY]["class_name"] == "VAE" and config[META_KEY]["weights"]["networks"] == ["decoder", "encoder"]
    assert config["likelihood"] == "gaussian"


def test_the_fake_token_is_what_the_fixture_logs_in_with(fake_hub):
    tiny_vae().push_to_hub("org/vae")
    assert any(h.get("authorization") == f"Bearer {FAKE_TOKEN}" for m, p, h in fake_hub.requests if m == "POST")
