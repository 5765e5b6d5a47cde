"""ImageFolderDataModule(in_memory=...): small folders decoded once into one tensor, the same batches as streaming."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gen.data import BadImageWarning, ImageDecodeError, ImageFolderDataModule, decoding, image_folder
from lightning_gen.data._base import default_num_workers

IMAGE_SIZE = 16
NUM_FILES = 16  # two classes of 8


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """Two class folders of random-pixel RGB images (no image is its own mirror image), not square."""
    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir()
        for i in range(NUM_FILES // 2):
            Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE + 3, IMAGE_SIZE, 3), dtype=np.uint8)).save(
                root / name / f"{i:02d}.png"
            )
    return root


def make_data(root: Path, **options) -> ImageFolderDataModule:
    defaults = dict(image_size=IMAGE_SIZE, batch_size=4, val_fraction=0.2)  # random_flip=True by default
    return ImageFolderDataModule(Path(root), **{**defaults, **options})


def epoch_batches(data: ImageFolderDataModule, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    data.setup("fit")
    loader = data.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_in_memory_and_streamed_batches_are_identical(image_root):
    streamed = make_data(image_root, in_memory=False, num_workers=2)
    in_memory = make_data(image_root)  # small: in memory by default, no workers
    in_memory_workers = make_data(image_root, in_memory=True, num_workers=2)
    in_memory.setup("fit")
    assert in_memory.keeps_in_memory and not streamed.keeps_in_memory and in_memory.num_workers == 0
    for epoch in range(3):
        reference = epoch_batches(streamed, epoch)
        assert len(reference) == 3  # 13 training images, batches of 4, last one dropped
        for other in (in_memory, in_memory_workers):
            batches = epoch_batches(other, epoch)
            assert len(batches) == len(reference)
            for (images, labels), (ref_images, ref_labels) in zip(batches, reference):
                assert images.dtype == torch.uint8 and torch.equal(images, ref_images)
                assert torch.equal(labels, ref_labels)
    # Flips happen (the streamed path's per-item flips, so the comparison above covers them).
    unflipped = make_data(image_root, random_flip=False)
    plain = torch.cat([images for images, _ in epoch_batches(unflipped, 0)])
    flipped = torch.cat([images for images, _ in epoch_batches(in_memory, 0)])
    mirrored = sum(torch.equal(a.flip(-1), b) for a, b in zip(plain, flipped))
    assert 0 < mirrored < len(plain)
    val_streamed = list(streamed.val_dataloader())
    val_in_memory = list(in_memory.val_dataloader())
    assert len(val_in_memory) == len(val_streamed) == 1
    assert all(torch.equal(a, b) for a, b in zip(val_in_memory[0], val_streamed[0]))


def test_automatic_choice_follows_the_byte_budget(image_root, monkeypatch):
    decoded_bytes = NUM_FILES * 3 * IMAGE_SIZE**2
    monkeypatch.setattr(image_folder, "IN_MEMORY_BYTES", decoded_bytes)
    at_budget = make_data(image_root)
    at_budget.setup("fit")
    assert at_budget.keeps_in_memory and at_budget.num_workers == 0
    monkeypatch.setattr(image_folder, "IN_MEMORY_BYTES", decoded_bytes - 1)
    above = make_data(image_root)
    above.setup("fit")
    assert not above.keeps_in_memory and above.num_workers == default_num_workers()
    forced = make_data(image_root, in_memory=True, num_workers=1)  # explicit values win
    forced.setup("fit")
    assert forced.keeps_in_memory and forced.num_workers == 1
    assert make_data(image_root, image_size=IMAGE_SIZE, channels=1).keeps_in_memory  # a third of the bytes
    with pytest.raises(ValueError, match="in_memory must be True, False or None"):
        make_data(image_root, in_memory="yes")


def test_in_memory_decodes_each_file_once(image_root, monkeypatch):
    calls = []
    real_decode = decoding.decode_image
    monkeypatch.setattr(decoding, "decode_image", lambda *args: calls.append(args[0]) or real_decode(*args))
    data = make_data(image_root)
    for epoch in range(3):
        epoch_batches(data, epoch)
    list(data.val_dataloader())
    assert sorted(calls) == sorted(set(calls)) and len(calls) == NUM_FILES


def test_in_memory_reads_the_disk_cache_instead_of_decoding(image_root, tmp_path, monkeypatch):
    cached = make_data(image_root, cache=True, cache_dir=tmp_path, in_memory=False)
    cached.prepare_data()
    reference = epoch_batches(cached, 1)
    monkeypatch.setattr(decoding, "decode_image", lambda *args: pytest.fail("decoded although cached"))
    from_cache = make_data(image_root, cache=True, cache_dir=tmp_path)
    batches = epoch_batches(from_cache, 1)
    assert from_cache.keeps_in_memory
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, reference, strict=True))


def test_bad_files_are_found_at_setup_in_memory(image_root, tmp_path):
    root = tmp_path / "folder"
    for path in image_root.rglob("*.png"):
        (root / path.parent.name).mkdir(parents=True, exist_ok=True)
        (root / path.parent.name / path.name).write_bytes(path.read_bytes())
    (root / "cats" / "zz-page.png").write_text("<html>not an image</html>")
    with pytest.raises(ImageDecodeError, match="zz-page.png"):
        make_data(root, on_error="raise").setup("fit")
    data = make_data(root)  # on_error="skip"
    with pytest.warns(BadImageWarning, match="zz-page.png") as caught:
        data.setup("fit")
    assert len([w for w in caught if issubclass(w.category, BadImageWarning)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", BadImageWarning)  # left out of both splits: never reported again
        images = torch.cat([b[0] for b in epoch_batches(data, 0)] + [b[0] for b in data.val_dataloader()])
    assert len(images) <= NUM_FILES and images.dtype == torch.uint8
    assert len(data._datasets["train"]) + len(data._datasets["val"]) == NUM_FILES
