"""push_to_hub / from_pretrained against the loopback Hub, offline use of the cache, and every Hub error."""

from __future__ import annotations

import json

import pytest
import torch
from _hub_server import set_offline
from _zoo_fixtures import tiny_gan, tiny_vae
from huggingface_hub import constants

import lightning_gen.zoo as zoo
from lightning_gen import VAE, GANModule
from lightning_gen.zoo import (
    CorruptedWeightsError,
    HubUnreachableError,
    MissingFileError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from lightning_gen.zoo.hub import push_folder

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
    pinned = first.push_to_hub("org/vae", revision="dev")
    second.push_to_hub("org/vae", revision="dev")  # the branch moves on; the pinned commit must not

    assert "model.safetensors" not in fake_hub.files("org/vae", "main")
    assert torch.equal(VAE.from_pretrained("org/vae", revision=pinned.oid).sample(4, seed=0), first.sample(4, seed=0))
    assert torch.equal(VAE.from_pretrained("org/vae", revision="dev").sample(4, seed=0), second.sample(4, seed=0))


def test_pushing_unchanged_files_again_is_not_an_error(fake_hub):
    folder_model = tiny_gan()
    first = folder_model.push_to_hub("org/same")
    again = folder_model.push_to_hub("org/same")
    assert again.oid == first.oid  # huggingface_hub skips the empty commit and reports the head


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


def test_repository_not_found(fake_hub):
    with pytest.raises(RepoNotFoundError, match=r"'org/nope' was not found.*hf auth login"):
        GANModule.from_pretrained("org/nope")


def test_revision_not_found(fake_hub):
    tiny_gan().push_to_hub("org/gan")
    with pytest.raises(RevisionNotFoundError, match="Revision 'v9' does not exist in Hub repository 'org/gan'"):
        GANModule.from_pretrained("org/gan", revision="v9")


def test_missing_weights_in_a_repository(fake_hub, tmp_path):
    folder = tiny_gan().save_pretrained(tmp_path / "m", samples=False)
    (folder / "model.safetensors").unlink()
    push_folder(folder, "org/config-only", validate=False)
    with pytest.raises(MissingFileError, match=r"org/config-only.*no model\.safetensors"):
        GANModule.from_pretrained("org/config-only")


def test_missing_config_in_a_repository(fake_hub, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("just notes\n")
    (tmp_path / "notes" / "last.ckpt").write_bytes(b"pickle")
    push_folder(tmp_path / "notes", "org/not-a-model", validate=False)
    assert "last.ckpt" not in fake_hub.files("org/not-a-model")  # only the format's files are uploaded
    with pytest.raises(MissingFileError, match=r"org/not-a-model.*has no config\.json"):
        GANModule.from_pretrained("org/not-a-model")


def test_invalid_repository_id(fake_hub):
    with pytest.raises(RepoNotFoundError, match="not a valid Hub repository id"):
        GANModule.from_pretrained("org/bad name!")


def test_corrupted_weights_on_the_hub(fake_hub, tmp_path):
    folder = tiny_gan().save_pretrained(tmp_path / "m", samples=False)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-100])  # truncated upload
    push_folder(folder, "org/broken", validate=False)
    with pytest.raises(CorruptedWeightsError, match=r"Hub repository org/broken.*force_download"):
        GANModule.from_pretrained("org/broken")
    with pytest.raises(CorruptedWeightsError, match=r"Hub repository org/broken"):
        zoo.pull("org/broken")  # pulling checks the weights against config.json too


def test_unreachable_hub_with_nothing_cached(fake_hub):
    fake_hub.stop()
    with pytest.raises(HubUnreachableError, match=r"org/gan.*unreachable.*not \(fully\) in the local"):
        GANModule.from_pretrained("org/gan")
    with pytest.raises(HubUnreachableError, match="Could not push org/gan"):
        tiny_gan().push_to_hub("org/gan")


def test_offline_mode_with_nothing_cached_says_how_to_go_online(fake_hub, monkeypatch):
    set_offline(monkeypatch)
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE=1"):
        GANModule.from_pretrained("org/gan")


def test_config_json_on_the_hub_is_the_documented_one(fake_hub):
    tiny_vae().push_to_hub("org/vae")
    config = json.loads(fake_hub.files("org/vae")["config.json"])
    assert config["class_name"] == "VAE" and config["weights"]["networks"] == ["decoder", "encoder"]
    assert config["init_args"]["likelihood"] == "gaussian"
