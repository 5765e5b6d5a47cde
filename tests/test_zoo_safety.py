"""Loading a downloaded folder is safe by construction: bounded values, shapes checked before allocation, no code run."""

from __future__ import annotations

import functools
import json
import struct
import subprocess
import sys
import textwrap

import pytest
import torch
from _zoo_fixtures import edit_config, save, tiny_gan

from lightning_gen import GANModule
from lightning_gen._base import GenerativeModule
from lightning_gen._files import sha256_file
from lightning_gen.hub import META_KEY, ConfigMismatchError, CorruptedWeightsError, HubMixin, WeightsMismatchError

# Runs in a fresh interpreter so that its peak resident memory (ru_maxrss, a high-water mark) says what
# the refused loads cost, undisturbed by whatever earlier tests allocated in this process.
_PEAK_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, torch
    from lightning_gen import GANModule
    from lightning_gen.hub import ConfigMismatchError, WeightsMismatchError

    folder = sys.argv[1]
    GANModule.from_pretrained(folder)  # warm up: imports and one real (small) load

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    results = {}
    for width, error in ((1_000_000, ConfigMismatchError), (4096, WeightsMismatchError)):
        config = json.load(open(f"{folder}/config.json"))
        config["width"] = width
        json.dump(config, open(f"{folder}/config.json", "w"))
        before = peak_mib()
        try:
            GANModule.from_pretrained(folder)
            message = "loaded"
        except error as err:
            message = str(err)
        results[str(width)] = {"growth_mib": peak_mib() - before, "message": message}
    with torch.device("meta"):
        real = GANModule(image_size=16, channels=3, latent_dim=8, width=4096, ema_decay=0.9)
    results["real_model_mib"] = sum(p.numel() for p in real.parameters()) * 4 / 2**20
    print(json.dumps(results))
    """
)


def test_oversized_configs_are_refused_before_any_allocation(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_MEMORY_SCRIPT, str(folder)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.strip().splitlines()[-1])

    # Out of bounds: refused by value, naming the argument and the limit.
    assert "width=1000000; expected an integer from 0 to 4096" in results["1000000"]["message"]
    # In bounds but not what the file holds: the dry run on the meta device names the shapes, and the
    # ~6 GiB model this config describes is never allocated.
    assert "shape mismatch: generator.net.0.weight: file (8, 16, 4, 4) vs model (8, 8192, 4, 4)" in results["4096"]["message"]
    assert results["real_model_mib"] > 4000
    assert results["1000000"]["growth_mib"] < 64 and results["4096"]["growth_mib"] < 64


def test_unknown_classes_are_refused_and_never_imported(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    edit_config(folder, lambda c: c[META_KEY].__setitem__("class_name", "antigravity"))
    for loader in (GANModule, GenerativeModule, HubMixin):
        with pytest.raises(ConfigMismatchError, match=r"names class 'antigravity', which is not a lightning-gen class"):
            loader.from_pretrained(folder)
    assert "antigravity" not in sys.modules
    edit_config(folder, lambda c: c[META_KEY].__setitem__("class_name", ["GANModule"]))
    with pytest.raises(ConfigMismatchError, match=r"class_name \['GANModule'\]; expected a class name"):
        GANModule.from_pretrained(folder)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("width", "8", "width='8'; expected an integer"),
        ("width", True, "expected an integer"),
        ("latent_dim", 10**9, "expected an integer from 0 to 16384"),
        ("ema_decay", float("nan"), "expected a finite number"),
        ("betas_g", [0.5, 0.9, 0.1], "expected a list of 2 values"),
        ("loss", {"class_path": "os.system"}, "expected a string"),
        ("d_norm", "x" * 1000, "expected a value of ordinary size"),
        ("hub_overrides", {"width": 4096}, r"passes \['hub_overrides'\] to GANModule"),
    ],
)
def test_config_values_are_checked_before_anything_is_built(tmp_path, monkeypatch, key, value, message):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    edit_config(folder, lambda c: c.__setitem__(key, value))
    built, real_init = [], GANModule.__init__

    @functools.wraps(real_init)  # keeps the signature the loader reads the constructor arguments from
    def recording_init(self, *args, **kwargs):
        built.append(kwargs)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(GANModule, "__init__", recording_init)
    for loader in (GANModule, HubMixin):  # HubMixin takes **kwargs, so the mixin copies every config key
        with pytest.raises(ConfigMismatchError, match=message):
            loader.from_pretrained(folder)
    assert built == []


def test_an_oversized_config_file_is_not_parsed(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    edit_config(folder, lambda c: c.__setitem__("padding", "x" * (2 << 20)))
    with pytest.raises(ConfigMismatchError, match=r"config\.json in .* is \d+ bytes; not a model config"):
        GANModule.from_pretrained(folder)


def test_a_weights_file_that_lies_about_its_size_is_refused(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    header = json.dumps({"generator.net.0.weight": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 4 * 10**10]}})
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 64)
    edit_config(folder, lambda c: c[META_KEY]["weights"].__setitem__("sha256", sha256_file(folder / "model.safetensors")))
    with pytest.raises(CorruptedWeightsError, match="not a readable safetensors file"):
        GANModule.from_pretrained(folder)


class _Payload:
    """Unpickling this creates a file: proof that a pickle was executed."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_in_place_of_the_weights_is_never_unpickled(tmp_path):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    payload = _Payload()
    payload.marker = str(tmp_path / "executed")
    torch.save({"generator.net.0.weight": payload}, folder / "model.safetensors")
    edit_config(folder, lambda c: c[META_KEY]["weights"].__setitem__("sha256", sha256_file(folder / "model.safetensors")))
    with pytest.raises(CorruptedWeightsError):
        GANModule.from_pretrained(folder)
    assert not (tmp_path / "executed").exists()


def test_wrong_shapes_are_named_before_the_module_is_built(tmp_path, monkeypatch):
    folder = save(tiny_gan(), tmp_path / "m", samples=False)
    edit_config(folder, lambda c: c.__setitem__("latent_dim", 12))
    real_init, devices = GANModule.__init__, []

    @functools.wraps(real_init)
    def recording_init(self, *args, **kwargs):
        devices.append(torch.empty(0).device.type)  # the default device the constructor runs under
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(GANModule, "__init__", recording_init)
    with pytest.raises(WeightsMismatchError, match=r"generator\.net\.0\.weight: file \(8, 16, 4, 4\) vs model \(12, 16, 4, 4\)"):
        GANModule.from_pretrained(folder)
    assert devices == ["meta"]  # only the dry run on the meta device was built
