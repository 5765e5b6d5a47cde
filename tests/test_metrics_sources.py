"""Real subsets, any source on either side, and one reading of a folder (issue 11 items 1-3).

A tiny named stand-in extractor ("tiny-test", registered by the fixtures) replaces Inception: what is tested is
which images reach the extractor and how, not the network.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from _metrics_fixtures import (
    TinyFeatures,
    TinyGenerativeModule,
    class_level,
    class_of,
    make_images,
    register_tiny_extractor,
    write_class_folders,
    write_image_folder,
)
from PIL import Image

from lightning_gen import GANModule
from lightning_gen.cli.fid import main
from lightning_gen.data import ImageFolderDataModule
from lightning_gen.metrics import FIDCallback, MetricEvaluator, evaluate, real_subset_indices
from lightning_gen.metrics.evaluate import REAL_SEED_OFFSET
from lightning_gen.metrics.sources import generate_batches

TINY = register_tiny_extractor()


def tiny_evaluate(real, fake, **kwargs):
    options = dict(feature_extractor=TINY, metrics=("fid",), batch_size=16, device="cpu", use_cache=False, num_workers=0)
    options.update(kwargs)
    return evaluate(real, fake, **options)


def record_real_images(monkeypatch) -> list[torch.Tensor]:
    """Every image the evaluator receives as real, in order."""
    seen: list[torch.Tensor] = []
    original = MetricEvaluator.update_real

    def spy(self, images):
        seen.extend(images.cpu())
        return original(self, images)

    monkeypatch.setattr(MetricEvaluator, "update_real", spy)
    return seen


@pytest.fixture(scope="module")
def class_root(tmp_path_factory) -> Path:
    return write_class_folders(tmp_path_factory.mktemp("classes") / "data")  # 4 classes x 25 images


# ------------------------------------------------------------------------------------------ 1. real subsets


def test_real_subset_is_seeded_uniform_and_covers_every_class_in_proportion():
    labels = np.repeat(np.arange(4), 25)  # sorted by class, as a class-folder scan is
    chosen = real_subset_indices(100, 50, seed=0)
    assert chosen == sorted(set(chosen)) and len(chosen) == 50 and chosen == real_subset_indices(100, 50, seed=0)
    assert chosen != real_subset_indices(100, 50, seed=1)
    assert chosen != list(range(50))  # not the first files
    # Uniform: over many seeds every class gets half of its images on average (hypergeometric mean 12.5).
    shares = np.mean([np.bincount(labels[real_subset_indices(100, 50, seed)], minlength=4) for seed in range(400)], axis=0)
    assert np.allclose(shares, 12.5, atol=0.5)
    assert real_subset_indices(100, None) == list(range(100)) == real_subset_indices(100, 500)


def test_fid_callback_num_real_is_a_random_subset_of_every_class(class_root, tmp_path, monkeypatch):
    seen = record_real_images(monkeypatch)
    datamodule = ImageFolderDataModule(class_root, image_size=12, batch_size=10, num_workers=1, val_fraction=0.0)
    callback = FIDCallback(feature_extractor=TinyFeatures(), num_samples=16, batch_size=16, num_real=50,
                           real_subset_seed=3, cache_dir=tmp_path / "cache", progress=False)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, callbacks=[callback],
                         default_root_dir=str(tmp_path))
    trainer.fit(TinyGenerativeModule(image_size=12), datamodule=datamodule)

    counts = Counter(class_of(image) for image in seen)
    assert sum(counts.values()) == 50 and set(counts) == {0, 1, 2, 3}
    labels = np.repeat(np.arange(4), 25)
    assert [counts[k] for k in range(4)] == np.bincount(labels[real_subset_indices(100, 50, seed=3)]).tolist()
    assert all(6 <= counts[k] <= 19 for k in range(4))  # in proportion: 12.5 expected, none starved
    assert callback.last_result.protocol.real_subset_seed == 3 and callback.last_result.protocol.n_real == 50


def test_evaluate_num_real_is_the_same_random_subset(class_root, monkeypatch):
    seen = record_real_images(monkeypatch)
    result = tiny_evaluate(class_root, make_images("stripes", 8, size=12), num_real=50, real_subset_seed=3)
    levels = sorted(class_of(image) for image in seen)
    labels = np.repeat(np.arange(4), 25)
    assert levels == sorted(labels[real_subset_indices(100, 50, seed=3)].tolist())
    assert result.protocol.real_subset_seed == 3 and result.protocol.n_real == 50
    full = tiny_evaluate(class_root, make_images("stripes", 8, size=12))
    assert full.protocol.real_subset_seed is None and full.protocol.n_real == 100


# ------------------------------------------------------------------------------ 2. any source on either side


@pytest.fixture(scope="module")
def gan_checkpoint(tmp_path_factory):
    model = GANModule(image_size=16, latent_dim=8, width=8)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    path = tmp_path_factory.mktemp("ckpt") / "gan.ckpt"
    trainer.save_checkpoint(path)
    return model.eval(), str(path)


def test_tensors_uint8_or_float_work_on_either_side():
    real_uint8 = make_images("blobs", 20, size=12)
    real_float = real_uint8.float() / 127.5 - 1  # quantizes back to the same uint8 images
    fake = make_images("stripes", 20, size=12)
    reference = tiny_evaluate(real_uint8, fake).fid
    assert reference > 0
    # The same uint8 images, features and float64 statistics: the same computation, bit for bit.
    assert tiny_evaluate(real_float, fake).fid == reference
    # FID is symmetric, but the swapped order is another computation: the square root of the other covariance,
    # then eigvalsh of another product. 20 images in 30 dimensions leave 11 eigenvalues that are 0 in exact
    # arithmetic; the solver returns them as noise of up to d * eps * |M| (30 * 2.2e-16 * 317 = 2e-12 here), and
    # the trace of square roots turns each into up to sqrt(2e-12) = 1.4e-6. The 11 of them move the FID (56) by
    # at most ~3e-5, 6e-7 relative, whatever the BLAS, LAPACK kernel or thread count (measured: 1e-9 to 1e-8).
    assert tiny_evaluate(fake, real_float).fid == pytest.approx(reference, rel=1e-6)


def test_a_model_or_checkpoint_on_the_real_side_is_sampled_from_its_own_seed(gan_checkpoint):
    model, checkpoint = gan_checkpoint
    fake = make_images("stripes", 16, size=16)
    samples = torch.cat(list(generate_batches(model, 16, 16, seed=7 + REAL_SEED_OFFSET)))
    expected = tiny_evaluate(samples, fake)
    for real in (model, checkpoint):
        result = tiny_evaluate(real, fake, num_samples=16, seed=7)
        assert result.fid == pytest.approx(expected.fid, rel=1e-9)
        assert result.protocol.real_sample_seed == 7 + REAL_SEED_OFFSET and result.protocol.n_real == 16
    # Both sides the same model: different latents, so the FID is not trivially zero.
    both = tiny_evaluate(checkpoint, checkpoint, num_samples=16)
    assert both.fid > 0 and both.protocol.sample_seed == 0 and both.protocol.real_sample_seed == REAL_SEED_OFFSET


def test_zoo_name_works_on_the_real_side():
    fake = make_images("stripes", 16, size=32)
    result = tiny_evaluate("dcgan-shapes32", fake, num_samples=16)
    assert result.fid > 0 and result.protocol.split == "dcgan-shapes32" and result.protocol.n_real == 16


def test_command_line_accepts_a_checkpoint_as_real_and_a_folder_as_fake(gan_checkpoint, tmp_path, capsys):
    _, checkpoint = gan_checkpoint
    fake = write_image_folder(tmp_path / "fake", make_images("stripes", 12, size=16))
    code = main([checkpoint, str(fake), "--extractor", TINY, "--num-samples", "12", "--device", "cpu", "--no-cache",
                 "--num-workers", "0", "--no-is", "--no-kid"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["fid"] > 0 and result["protocol"]["n_real"] == 12 and result["protocol"]["n_fake"] == 12
    assert result["protocol"]["fake_source"] == f"folder: {fake}"


# ------------------------------------------------------------------------------------ 3. one reading of a folder


def write_mixed_folder(root: Path) -> Path:
    """Class folders with the files a data module must decode carefully: RGBA, 16-bit grayscale, JPEG, GIF, and
    sizes other than the training size (24 px and 30 x 20)."""
    rng = np.random.default_rng(3)
    for label in range(2):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(6):
            rgb = rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
            rgb[..., label] = 200
            Image.fromarray(rgb).save(folder / f"{index}.png")
        alpha = np.dstack([rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8), np.full((24, 24), 90, np.uint8)])
        Image.fromarray(alpha, "RGBA").save(folder / "alpha.png")
        deep = (rng.integers(0, 65536, size=(20, 30))).astype(np.uint16)
        Image.fromarray(deep).save(folder / "deep.png")  # mode I;16: clipping at 255 would make it white
        Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(folder / "photo.jpg", quality=90)
        Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(folder / "anim.gif")
    return root


def test_command_line_and_fid_callback_read_a_folder_the_same_way(tmp_path, capsys):
    root = write_mixed_folder(tmp_path / "mixed")
    # The library's own data module with its defaults (random flips on, a worker process, a Path root).
    datamodule = ImageFolderDataModule(root, image_size=16, batch_size=4, num_workers=1, val_fraction=0.0)
    model = GANModule(image_size=16, latent_dim=8, width=8)
    callback = FIDCallback(feature_extractor=TINY, num_samples=20, batch_size=8, seed=4, progress=False,
                           cache_dir=tmp_path / "cache-callback")
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, callbacks=[callback],
                         default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=datamodule)
    checkpoint = tmp_path / "after.ckpt"
    trainer.save_checkpoint(checkpoint)  # the weights the callback sampled from

    code = main([str(root), str(checkpoint), "--image-size", "16", "--extractor", TINY, "--num-samples", "20",
                 "--batch-size", "8", "--seed", "4", "--device", "cpu", "--num-workers", "1", "--no-is", "--no-kid",
                 "--cache-dir", str(tmp_path / "cache-cli")])
    assert code == 0, capsys.readouterr().err
    cli = json.loads(capsys.readouterr().out)
    ours = callback.last_result
    assert ours.protocol.n_real == cli["protocol"]["n_real"] == 20
    assert cli["fid"] == pytest.approx(ours.fid, rel=1e-9, abs=1e-12)
    assert cli["protocol"]["real_resize"] == ours.protocol.real_resize
    assert cli["protocol"]["real_decoding"].split(";")[0] == ours.protocol.real_decoding.split(";")[0]
    # Native size is a different reading, and the protocol says so.
    native = tiny_evaluate(root, model, num_samples=20)
    assert native.protocol.real_resize == "native size" and native.fid != pytest.approx(cli["fid"])
