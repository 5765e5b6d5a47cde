"""Exact resume with the library's own data modules: flips on, 0 and 2 workers, a Path root (CPU, tiny).

A run stopped after 2 epochs and resumed for a third must end bit for bit where an uninterrupted 3-epoch
run ends. That holds only if every random choice in the data path (the order, the flips, the substitutes
for bad files) is a function of (seed, epoch, index), never of the global RNG or of the worker that
drew it, and if the checkpoint loads with ``weights_only=True``, as Lightning loads it to resume.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from _core_helpers import trainer
from lightning_gen import VAE, GANModule
from lightning_gen.data import ImageFolderDataModule, ShapesDataModule

IMAGE_SIZE = 16


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Tiny nets: a second intra-op thread only adds synchronisation, and on a busy machine (the suite
    shares two cores with other jobs) its spin-waits made a training step ~40x slower than one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """Two class folders of 8 random-pixel images each: no image is its own mirror image."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir()
        for i in range(8):
            pixels = rng.integers(0, 256, (IMAGE_SIZE + 2, IMAGE_SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


def make_data(kind: str, root: Path, num_workers: int, **overrides):
    """The library's data modules at their defaults (random_flip=True), shrunk to a few batches.

    ``image_folder`` is small enough to be kept in memory by default; ``image_folder_streamed`` decodes
    every item on every epoch (``in_memory=False``), the path of larger folders.
    """
    if kind.startswith("image_folder"):
        options = dict(image_size=IMAGE_SIZE, batch_size=4, num_workers=num_workers, val_fraction=0.2)
        if kind == "image_folder_streamed":
            options["in_memory"] = False
        options.update(overrides)
        return ImageFolderDataModule(Path(root), **options)
    options = dict(image_size=IMAGE_SIZE, num_images=16, batch_size=4, val_fraction=0.25, num_workers=num_workers)
    options.update(overrides)
    return ShapesDataModule(**options)


def epoch_images(data, epoch: int) -> torch.Tensor:
    loader = data.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch, and after restoring one
    return torch.cat([images for images, _ in loader])


# ------------------------------------------------------------------------------ the data path alone


@pytest.mark.parametrize("kind", ["image_folder", "image_folder_streamed", "shapes"])
def test_training_batches_depend_only_on_seed_epoch_and_index(kind, image_root):
    data = make_data(kind, image_root, num_workers=0)
    data.setup("fit")
    uninterrupted = [epoch_images(data, epoch) for epoch in range(3)]

    # A fresh process after a checkpoint: new data module, 2 workers, another global RNG state.
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    resumed = make_data(kind, image_root, num_workers=2)
    resumed.setup("fit")
    assert torch.equal(epoch_images(resumed, 2), uninterrupted[2])

    # The flips do happen, to about half the images, and to different images each epoch.
    unflipped = make_data(kind, image_root, num_workers=0, random_flip=False)
    unflipped.setup("fit")
    flip_patterns = []
    for epoch in range(2):
        plain, flipped = epoch_images(unflipped, epoch), uninterrupted[epoch]
        mirrored = torch.tensor([torch.equal(a.flip(-1), b) for a, b in zip(plain, flipped)])
        kept = torch.tensor([torch.equal(a, b) for a, b in zip(plain, flipped)])
        assert bool((mirrored ^ kept).all())  # every image is itself or its mirror image
        assert 0 < int(mirrored.sum()) < len(mirrored)
        flip_patterns.append(mirrored)
    assert not torch.equal(flip_patterns[0], flip_patterns[1])

    # Validation images are never flipped.
    plain_val = torch.cat([images for images, _ in unflipped.val_dataloader()])
    assert torch.equal(torch.cat([images for images, _ in data.val_dataloader()]), plain_val)


@pytest.mark.parametrize("kind", ["image_folder", "image_folder_streamed", "shapes"])
def test_the_data_path_leaves_the_global_rng_alone(kind, image_root, tmp_path):
    # Otherwise the model's random draws would shift with what the data path did, e.g. whether the
    # image cache had to be built in this run.
    extra = dict(cache=True, cache_dir=tmp_path / "cache") if kind.startswith("image_folder") else {}
    torch.manual_seed(7)
    before = torch.get_rng_state()
    data = make_data(kind, image_root, num_workers=2, **extra)
    data.prepare_data()
    data.setup("fit")
    for epoch in range(2):
        epoch_images(data, epoch)
    list(data.val_dataloader())
    assert torch.equal(torch.get_rng_state(), before)


def test_ddp_shards_see_the_single_process_flips(image_root):
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    data = make_data("image_folder", image_root, num_workers=0)
    data.setup("fit")
    reference = data.train_dataloader()
    reference.sampler.set_epoch(2)
    single_process = [reference.dataset[key][0] for key in reference.sampler]  # all items, no drop_last
    padded = single_process + single_process[: len(single_process) % 2]  # DistributedSampler pads evenly
    for rank in range(2):
        process_data = make_data("image_folder", image_root, num_workers=0)
        loader = process_data.train_dataloader()
        # What Lightning wraps our sampler in under DDP; it forwards set_epoch to our sampler.
        shard = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=rank, shuffle=False)
        shard.set_epoch(2)
        images = [loader.dataset[key][0] for key in shard]
        assert all(torch.equal(a, b) for a, b in zip(images, padded[rank::2], strict=True))


def test_path_hyperparameters_are_stored_as_strings(image_root, tmp_path):
    data = ImageFolderDataModule(Path(image_root), image_size=IMAGE_SIZE, cache_dir=tmp_path / "cache")
    assert data.hparams["root"] == str(image_root) and type(data.hparams["root"]) is str
    assert data.hparams["cache_dir"] == str(tmp_path / "cache") and type(data.hparams["cache_dir"]) is str
    assert isinstance(data.root, Path)  # the attribute the code uses stays a Path


# ----------------------------------------------------------------------------- training and resume


def _fit(directory: Path, make_model, make_datamodule, max_epochs: int, ckpt_path: str | None = None):
    L.seed_everything(0)
    model = make_model()
    checkpoint = ModelCheckpoint(dirpath=directory / "ckpt", save_last=True)
    t = trainer(
        directory,
        max_epochs=max_epochs,
        enable_checkpointing=True,
        callbacks=[checkpoint],
        deterministic=True,
    )
    t.fit(model, datamodule=make_datamodule(), ckpt_path=ckpt_path)
    return model, t


MODELS = {
    "gan-ema": lambda num_classes: GANModule(
        image_size=IMAGE_SIZE, latent_dim=8, width=8, ema_decay=0.9, num_classes=num_classes, num_sample_images=4
    ),
    "vae": lambda num_classes: VAE(image_size=IMAGE_SIZE, latent_dim=4, width=8, num_sample_images=4),
}


# The GAN with every (data module, workers) pair; the VAE, whose data path is the same, with each data
# module and each worker count once. Two workers is where Lightning's first resumed epoch replayed
# epoch 0 (see ImageDataModuleBase._training_sampler).
@pytest.mark.parametrize(
    "model_name, kind, num_workers",
    [
        ("gan-ema", "image_folder", 0),
        ("gan-ema", "image_folder", 2),
        ("gan-ema", "image_folder_streamed", 2),
        ("gan-ema", "shapes", 0),
        ("gan-ema", "shapes", 2),
        ("vae", "image_folder", 0),
        ("vae", "shapes", 2),
    ],
)
def test_resume_with_library_data_matches_uninterrupted_run(tmp_path, image_root, model_name, kind, num_workers):
    make_datamodule = lambda: make_data(kind, image_root, num_workers)  # noqa: E731
    num_classes = make_datamodule().num_classes
    make_model = lambda: MODELS[model_name](num_classes)  # noqa: E731

    full, full_trainer = _fit(tmp_path / "full", make_model, make_datamodule, max_epochs=3)
    _fit(tmp_path / "split", make_model, make_datamodule, max_epochs=2)
    # Lightning resumes with weights_only=True: a pathlib.Path anywhere in the checkpoint would fail here.
    saved = torch.load(tmp_path / "split" / "ckpt" / "last.ckpt", weights_only=True)
    if kind.startswith("image_folder"):
        assert saved["datamodule_hyper_parameters"]["root"] == str(image_root)
    resumed, resumed_trainer = _fit(tmp_path / "split", make_model, make_datamodule, max_epochs=3, ckpt_path="last")

    assert resumed_trainer.global_step == full_trainer.global_step > 0
    assert resumed.generator_step == full.generator_step
    full_state, resumed_state = full.state_dict(), resumed.state_dict()
    assert full_state.keys() == resumed_state.keys()
    if model_name == "gan-ema":
        assert any(name.startswith("generator_ema.") for name in full_state)
    for name in full_state:
        assert torch.equal(full_state[name], resumed_state[name]), name  # weights, EMA weights, BN statistics
    # The last validation ran on equal weights and images; it must also draw equal noise (the VAE's ELBO
    # samples its reparameterization noise, which must not come from the global RNG).
    val_metrics = sorted(k for k in full_trainer.callback_metrics if k.startswith("val/"))
    assert val_metrics == sorted(k for k in resumed_trainer.callback_metrics if k.startswith("val/"))
    assert val_metrics or model_name != "vae"
    for name in val_metrics:
        assert torch.equal(full_trainer.callback_metrics[name], resumed_trainer.callback_metrics[name]), name
    assert len(full_trainer.optimizers) == len(resumed_trainer.optimizers) == (2 if model_name == "gan-ema" else 1)
    for full_opt, resumed_opt in zip(full_trainer.optimizers, resumed_trainer.optimizers):
        full_states = list(full_opt.state_dict()["state"].values())
        resumed_states = list(resumed_opt.state_dict()["state"].values())
        assert len(full_states) == len(resumed_states) > 0
        for a, b in zip(full_states, resumed_states):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
