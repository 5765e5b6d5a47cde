"""Helpers shared by the zoo tests: tiny models, a private zoo registry, weight-file surgery.

Test modules import the helpers and list this module in ``pytest_plugins`` for the fixture. It holds
no asserts, so it opts out of assertion rewriting (PYTEST_DONT_REWRITE), which would otherwise warn
that the module was imported before pytest registered it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lightning_gen import VAE, GANModule
from lightning_gen._files import sha256_file
from lightning_gen.hub import CONFIG_NAME, META_KEY, WEIGHTS_NAME


def tiny_gan(seed: int = 0, **kwargs) -> GANModule:
    """A 16x16 GAN whose raw and EMA generators differ, so a test can tell the two variants apart."""
    torch.manual_seed(seed)
    model = GANModule(image_size=16, channels=3, latent_dim=8, width=8, ema_decay=0.9, **kwargs)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def tiny_vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(image_size=16, channels=3, latent_dim=8, width=8)


def save(model, folder: Path, **kwargs) -> Path:
    """``model.save_pretrained(folder, **kwargs)`` (which returns None, as the mixin's does), then the folder."""
    model.save_pretrained(folder, **kwargs)
    return Path(folder)


def rewrite_weights(folder: Path, mutate: Callable[[dict], dict], record_sha: bool = True) -> None:
    """Edit model.safetensors of a folder and (by default) record the new sha256 in config.json,
    so that the loader's integrity check passes and the test reaches the check it is about."""
    state = mutate(load_file(str(folder / WEIGHTS_NAME)))
    save_file(state, str(folder / WEIGHTS_NAME))
    if record_sha:
        edit_config(folder, lambda c: c[META_KEY]["weights"].__setitem__("sha256", sha256_file(folder / WEIGHTS_NAME)))


def edit_config(folder: Path, mutate: Callable[[dict], object]) -> None:
    config = json.loads((folder / CONFIG_NAME).read_text())
    mutate(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))


@pytest.fixture
def private_zoo(tmp_path, monkeypatch):
    """Point lightning_gen.zoo at an empty registry and zoo folder in tmp_path.

    Returns ``register(name, class_name, folder=None, **fields)``, which adds an index entry; with a
    ``folder`` (a saved model) it copies it to ``<zoo>/<name>/`` and pins its sha256.
    """
    import shutil

    import lightning_gen.zoo as zoo

    index_path = tmp_path / "index.json"
    index_path.write_text(json.dumps({"format_version": 1, "models": []}))
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    monkeypatch.setattr(zoo, "INDEX_PATH", index_path)
    monkeypatch.setattr(zoo, "PACKAGE_MODELS_DIR", zoo_dir)
    monkeypatch.delenv(zoo.ZOO_DIR_ENV, raising=False)

    def register(name: str, class_name: str, folder: Path | None = None, **fields) -> dict:
        entry = {
            "name": name,
            "class_name": class_name,
            "description": f"test model {name}",
            "dataset": "noise",
            "license": "apache-2.0",
            "repo_id": None,
            "revision": None,
            "sha256": None,
            **fields,
        }
        if folder is not None:
            shutil.copytree(folder, zoo_dir / name)
            if entry["sha256"] is None:
                entry["sha256"] = sha256_file(zoo_dir / name / WEIGHTS_NAME)
        raw = json.loads(index_path.read_text())
        raw["models"].append(entry)
        index_path.write_text(json.dumps(raw))
        return entry

    register.index_path = index_path  # type: ignore[attr-defined]
    register.zoo_dir = zoo_dir  # type: ignore[attr-defined]
    return register
