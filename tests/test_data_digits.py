"""The built-in real digits: the shipped file, the fixed split, sizes, the data module, full-MNIST files, make-digits."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from _core_helpers import trainer
from lightning_gen import GANModule
from lightning_gen.data import DigitsDataModule, DigitsDataset, ImageFolderDataModule, load_digits, write_digits_folder
from lightning_gen.data import digits as digits_module


def test_shipped_digits_are_balanced_real_mnist_with_a_fixed_disjoint_split():
    train_images, train_labels = load_digits("train")
    test_images, test_labels = load_digits("test")
    assert train_images.shape == (4000, 28, 28) and test_images.shape == (1000, 28, 28)
    assert train_labels.bincount().tolist() == [400] * 10 and test_labels.bincount().tolist() == [100] * 10
    # MNIST digits: white strokes on black, an empty border, every image different.
    assert int(train_images[:, 0, :].max()) == 0 and int(train_images.max()) == 255
    everything = torch.cat([train_images, test_images]).flatten(1)
    assert len({hashlib.sha256(row.numpy().tobytes()).hexdigest() for row in everything}) == 5000
    # The split never moves: a digit's side depends only on its position in the shipped file (a hash of it).
    # Pinned here so that a change to the split (which would invalidate every published figure) fails loudly.
    with np.load(digits_module.MNIST_5K_FILE) as data:
        all_labels = torch.from_numpy(data["labels"].astype(np.int64))
    test_positions = digits_module.digits_split_indices(all_labels, "test")
    digest = hashlib.sha256(test_positions.numpy().astype("<i8").tobytes()).hexdigest()[:16]
    assert digest == "b6ea10325d7459be", digest


def test_a_damaged_digits_file_is_refused(tmp_path, monkeypatch):
    damaged = tmp_path / "mnist_5k.npz"
    shutil.copy(digits_module.MNIST_5K_FILE, damaged)
    with open(damaged, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    monkeypatch.setattr(digits_module, "MNIST_5K_FILE", damaged)
    digits_module._load_source.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="damaged"):
            load_digits("train")
    finally:
        digits_module._load_source.cache_clear()


@pytest.mark.parametrize("image_size, channels", [(28, 1), (32, 1), (32, 3), (16, 1), (64, 3)])
def test_sizes_and_channels(image_size, channels):
    dataset = DigitsDataset("test", image_size=image_size, channels=channels)
    image, label = dataset[0]
    assert image.shape == (channels, image_size, image_size) and image.dtype == torch.uint8
    assert isinstance(label, int) and 0 <= label < 10
    native = DigitsDataset("test", image_size=28)[0][0][0]
    if image_size == 32:
        assert torch.equal(image[0, 2:30, 2:30], native)  # padded, strokes untouched
        assert int(image[:, :2].max()) == int(image[:, :, -2:].max()) == 0
    if channels == 3:
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    if image_size not in (28, 32):  # resized from the padded 32 px digit: same mean brightness within rounding
        padded = DigitsDataset("test", image_size=32)[0][0].float().mean()
        assert abs(float(image.float().mean()) - float(padded)) < 1.0


def test_per_class_subset_is_balanced_seeded_and_inside_the_training_split():
    few = DigitsDataset("train", image_size=28, per_class=50)
    again = DigitsDataset("train", image_size=28, per_class=50)
    other = DigitsDataset("train", image_size=28, per_class=50, subset_seed=1)
    assert few.labels.bincount().tolist() == [50] * 10
    assert torch.equal(few.images, again.images) and not torch.equal(few.images, other.images)
    full = {img.numpy().tobytes() for img in DigitsDataset("train", image_size=28).images}
    assert all(img.numpy().tobytes() in full for img in few.images)
    with pytest.raises(ValueError, match="per_class=500"):
        DigitsDataset("test", per_class=500)


def test_data_module_serves_labelled_uint8_batches_and_held_out_validation():
    dm = DigitsDataModule(batch_size=16)
    assert dm.num_classes == 10 and dm.class_names == [str(d) for d in range(10)] and not dm.random_flip
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.long
    val = torch.cat([batch[0] for batch in dm.val_dataloader()])
    assert torch.equal(val, DigitsDataset("test").images)
    assert dm.fingerprint("train") != dm.fingerprint("val") == dm.fingerprint("test")
    assert DigitsDataModule(image_size=28).fingerprint("train") != dm.fingerprint("train")
    # On the device the module sees floats in [-1, 1], as with every library data module.
    floats, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert floats.dtype == torch.float32 and float(floats.min()) == -1.0
    with pytest.raises(ValueError, match="channels must be 1"):
        DigitsDataModule(channels=2)


def test_training_batches_depend_only_on_seed_and_epoch_with_workers():
    def epoch(dm, e):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(e)
        return torch.cat([images for images, _ in loader])

    single = DigitsDataModule(batch_size=500, train_per_class=20)
    torch.manual_seed(99)
    workers = DigitsDataModule(batch_size=500, train_per_class=20, num_workers=2)
    assert torch.equal(epoch(single, 1), epoch(workers, 1))
    assert not torch.equal(epoch(single, 0), epoch(single, 1))


def test_conditional_gan_resumes_exactly_on_the_digits(tmp_path):
    """The README's main job in miniature: a class-conditional GAN on DigitsDataModule, stopped and resumed."""

    def fit(directory: Path, max_epochs: int, ckpt_path: str | None = None) -> GANModule:
        L.seed_everything(0)
        model = GANModule(image_size=16, channels=1, latent_dim=8, width=4, num_classes=10, ema_decay=0.9, num_sample_images=10)
        dm = DigitsDataModule(image_size=16, batch_size=20, train_per_class=4, num_workers=2)
        t = trainer(directory, max_epochs=max_epochs, enable_checkpointing=True, deterministic=True,
                    callbacks=[ModelCheckpoint(dirpath=directory / "ckpt", save_last=True)])
        t.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return model

    full = fit(tmp_path / "full", 3)
    fit(tmp_path / "split", 2)
    resumed = fit(tmp_path / "split", 3, ckpt_path="last")
    assert resumed.generator_step == full.generator_step == 6
    for name, tensor in full.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_full_mnist_from_torchvision_files(tmp_path, compress):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(30) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(10),
    }
    for name, array in arrays.items():
        _write_idx(raw / name, array, compress)
    dm = DigitsDataModule(root=tmp_path, image_size=28, batch_size=10)  # a Path, as users pass it
    assert isinstance(dm.hparams["root"], str)
    train = dm.split_dataset("train")
    assert len(train) == 30 and torch.equal(train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8)))
    assert dm.split_dataset("val").labels.tolist() == list(range(10))
    assert dm.fingerprint("train") != DigitsDataModule(image_size=28).fingerprint("train")
    with pytest.raises(FileNotFoundError, match="MNIST/raw"):
        load_digits("train", root=tmp_path / "nowhere")


def test_make_digits_writes_class_folders_that_read_back_with_the_same_labels(tmp_path):
    out = tmp_path / "digits"
    result = subprocess.run(
        [sys.executable, "-m", "lightning_gen.cli", "make-digits", str(out), "--split", "test", "--per-class", "3", "--image-size", "32"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Wrote 30 test digits" in result.stdout
    folder = ImageFolderDataModule(out, image_size=32, channels=1, val_fraction=0.0, random_flip=False, batch_size=30, num_workers=0)
    folder.setup("fit")
    assert folder.class_names == [str(d) for d in range(10)]
    images, labels = next(iter(folder.train_dataloader()))
    expected = DigitsDataset("test", image_size=32, per_class=3)
    by_bytes = {img.numpy().tobytes(): label for img, label in zip(expected.images, expected.labels.tolist())}
    assert sorted(by_bytes[img.numpy().tobytes()] for img in images) == sorted(expected.labels.tolist())
    with pytest.raises(FileExistsError):
        write_digits_folder(out)
