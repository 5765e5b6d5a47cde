"""On-disk cache of decoded images: reuse, invalidation, atomicity, bad files."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gen.data import BadImageWarning, ImageDecodeError, ImageFolderDataModule, decoding
from lightning_gen.data.cache import cache_key, default_cache_dir, load_or_build_cache


def write_folder(root: Path, count: int, start: int = 0) -> Path:
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        pixels = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
        folder = root / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def make_dm(root: Path, cache_dir: Path, **overrides) -> ImageFolderDataModule:
    options = {
        "image_size": 8,
        "batch_size": 4,
        "num_workers": 0,
        "val_fraction": 0.25,
        "random_flip": False,
        "cache": True,
        "cache_dir": cache_dir,
    }
    options.update(overrides)
    return ImageFolderDataModule(root, **options)


class DecodeCounter:
    """Wraps decoding.decode_image and counts the calls."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        self._real = decoding.decode_image
        monkeypatch.setattr(decoding, "decode_image", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._real(*args, **kwargs)


def images_and_labels(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_cache_is_built_once_then_reused_without_decoding(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "images", 12)
    counter = DecodeCounter(monkeypatch)
    first = make_dm(root, tmp_path / "cache")
    first.prepare_data()
    first.setup("fit")
    assert counter.calls == 12
    cached_val = images_and_labels(first.val_dataloader())
    assert counter.calls == 12  # loaders read the memory map

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decode_image called although the cache is warm")

    monkeypatch.setattr(decoding, "decode_image", must_not_decode)
    later_run = make_dm(root, tmp_path / "cache")
    later_run.prepare_data()
    later_run.setup("fit")
    again = images_and_labels(later_run.val_dataloader())
    assert torch.equal(again[0], cached_val[0]) and torch.equal(again[1], cached_val[1])


def test_cached_images_equal_decoded_images(tmp_path):
    root = write_folder(tmp_path / "images", 8)
    cached = make_dm(root, tmp_path / "cache", val_fraction=0.0)
    cached.setup("fit")
    uncached = make_dm(root, tmp_path / "cache", val_fraction=0.0, cache=False)
    uncached.setup("fit")
    for index in range(8):
        a = cached._datasets["train"][index]
        b = uncached._datasets["train"][index]
        assert torch.equal(a[0], b[0]) and a[1] == b[1]


@pytest.mark.parametrize("change", ["touch", "add", "remove", "image_size", "channels"])
def test_changes_invalidate_the_cache(tmp_path, monkeypatch, change):
    root = write_folder(tmp_path / "images", 6)
    cache_dir = tmp_path / "cache"
    make_dm(root, cache_dir).setup()
    settings = {}
    if change == "touch":
        target = root / "even" / "000.png"
        stat = target.stat()
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    elif change == "add":
        write_folder(root, 1, start=6)
    elif change == "remove":
        (root / "odd" / "001.png").unlink()
    elif change == "image_size":
        settings["image_size"] = 16
    else:
        settings["channels"] = 1
    counter = DecodeCounter(monkeypatch)
    dm = make_dm(root, cache_dir, **settings)
    dm.setup()
    assert counter.calls == len(dm.index.records)  # everything decoded again
    assert len([p for p in cache_dir.iterdir() if not p.name.startswith(".")]) == 2
    images = torch.cat([b[0] for b in dm.train_dataloader()])
    assert images.shape[1:] == (dm.channels, dm.image_size, dm.image_size)


def test_interrupted_build_leaves_no_cache_behind(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "images", 6)
    cache_dir = tmp_path / "cache"
    calls = {"n": 0}
    real = decoding.decode_image

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # Ctrl-C half-way through
        return real(*args, **kwargs)

    monkeypatch.setattr(decoding, "decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_dm(root, cache_dir).prepare_data()
    assert list(cache_dir.iterdir()) == []  # neither a final nor a temporary folder
    monkeypatch.setattr(decoding, "decode_image", real)
    dm = make_dm(root, cache_dir)
    dm.setup()
    assert len(list(cache_dir.iterdir())) == 1
    assert torch.cat([b[0] for b in dm.train_dataloader()]).float().std() > 10


def test_half_written_cache_folder_is_rebuilt(tmp_path):
    root = write_folder(tmp_path / "images", 4)
    cache_dir = tmp_path / "cache"
    dm = make_dm(root, cache_dir)
    dm.setup()
    (folder,) = cache_dir.iterdir()
    (folder / "index.json").unlink()  # as if the final write never happened
    rebuilt = make_dm(root, cache_dir)
    rebuilt.setup()
    assert (folder / "index.json").exists()
    assert len(rebuilt._datasets["train"]) == len(dm._datasets["train"])


def test_bad_files_found_while_caching_are_skipped_with_one_warning(tmp_path):
    root = write_folder(tmp_path / "images", 8)
    (root / "even" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "odd" / "empty.png").write_bytes(b"")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dm = make_dm(root, tmp_path / "cache", val_fraction=0.0)
        dm.prepare_data()
        dm.setup("fit")
        images = torch.cat([b[0] for b in dm.train_dataloader()])
    messages = [str(w.message) for w in record if issubclass(w.category, BadImageWarning)]
    assert len(messages) == 1
    assert "Skipped 2" in messages[0] and "broken.png" in messages[0] and "empty.png" in messages[0]
    assert len(dm._datasets["train"]) == 8 and images.shape[0] == 8


def test_bad_file_with_raise_stops_the_build_and_names_the_file(tmp_path):
    root = write_folder(tmp_path / "images", 4)
    (root / "odd" / "fake.jpg").write_text("not a jpeg")
    cache_dir = tmp_path / "cache"
    with pytest.raises(ImageDecodeError, match=r"fake\.jpg"):
        make_dm(root, cache_dir, on_error="raise").prepare_data()
    assert list(cache_dir.iterdir()) == []
    # A cache built with on_error="skip" still raises for a strict data module.
    with pytest.warns(BadImageWarning, match=r"fake\.jpg"):
        make_dm(root, cache_dir, on_error="skip").setup()
    with pytest.raises(ImageDecodeError, match=r"fake\.jpg.*UnidentifiedImageError"):
        make_dm(root, cache_dir, on_error="raise").setup()


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_GEN_CACHE", str(tmp_path / "lg"))
    assert default_cache_dir() == tmp_path / "lg" / "data"
    monkeypatch.delenv("LIGHTNING_GEN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "lightning_gen" / "data"


def test_default_cache_dir_is_used_without_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_GEN_CACHE", str(tmp_path / "lg"))
    root = write_folder(tmp_path / "images", 4)
    make_dm(root, None).setup()
    assert len(list((tmp_path / "lg" / "data").iterdir())) == 1


def test_cache_key_depends_on_metadata_and_settings():
    files = [("a.png", 10, 1), ("b.png", 20, 2)]
    key = cache_key(files, 32, 3)
    assert cache_key(list(files), 32, 3) == key
    assert cache_key(files[:1], 32, 3) != key
    assert cache_key([("a.png", 11, 1), files[1]], 32, 3) != key
    assert cache_key(files, 64, 3) != key and cache_key(files, 32, 1) != key


def test_cached_dataset_pickles_without_the_array(tmp_path):
    root = write_folder(tmp_path / "images", 40)
    dm = make_dm(root, tmp_path / "cache", image_size=32, val_fraction=0.0, in_memory=False)  # the memory-mapped dataset
    dm.setup()
    dataset = dm._datasets["train"]
    dataset[0]  # opens the memory map
    payload = pickle.dumps(dataset)
    assert len(payload) < 40 * 3 * 32 * 32 // 4  # far smaller than the images
    assert torch.equal(pickle.loads(payload)[0][0], dataset[0][0])


def test_load_or_build_cache_validates_on_error(tmp_path):
    with pytest.raises(ValueError, match="on_error must be 'skip' or 'raise'"):
        load_or_build_cache(tmp_path, [], image_size=8, channels=3, on_error="warn")
