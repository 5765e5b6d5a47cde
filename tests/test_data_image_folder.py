"""ImageFolderDataModule: discovery, labels, split, bad files, loaders, Lightning integration."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gen.data import (
    BadImageWarning,
    EpochShuffleSampler,
    ImageDecodeError,
    ImageFolderDataModule,
    scan_image_folder,
)

# --------------------------------------------------------------------------- helpers


def write_image(path: Path, colour=(200, 30, 30), size=(20, 16)) -> Path:
    """Write a small uniform image; the format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def colour_of(index: int) -> tuple[int, int, int]:
    return (10 * index % 256, 255 - 10 * index % 256, 7 * index % 256)


def flat_folder(root: Path, count: int) -> Path:
    for i in range(count):
        write_image(root / f"img_{i:03d}.png", colour_of(i))
    return root


def make_dm(root: Path, **overrides) -> ImageFolderDataModule:
    options = {
        "image_size": 8,
        "batch_size": 4,
        "num_workers": 0,
        "val_fraction": 0.0,
        "random_flip": False,
    }
    options.update(overrides)
    return ImageFolderDataModule(root, **options)


def all_images(loader) -> torch.Tensor:
    batches = [batch[0] if isinstance(batch, tuple) else batch for batch in loader]
    return torch.cat(batches)


def bad_file_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, BadImageWarning)]


# ------------------------------------------------------------------ discovery, labels


def test_class_folders_give_sorted_names_and_labels(tmp_path):
    write_image(tmp_path / "zebra" / "a.png")
    write_image(tmp_path / "ant" / "b.png")
    write_image(tmp_path / "ant" / "nested" / "deeper" / "c.png")
    dm = make_dm(tmp_path)
    assert dm.class_names == ["ant", "zebra"] and dm.num_classes == 2
    labels = {r.relpath: r.label for r in dm.index.records}
    assert labels == {"ant/b.png": 0, "ant/nested/deeper/c.png": 0, "zebra/a.png": 1}


def test_labelled_batches_carry_the_class_of_each_image(tmp_path):
    for i in range(4):
        write_image(tmp_path / "red" / f"{i}.png", (255, 0, 0))
        write_image(tmp_path / "blue" / f"{i}.png", (0, 0, 255))
    dm = make_dm(tmp_path)
    dm.setup("fit")
    for images, labels in dm.train_dataloader():
        assert labels.dtype == torch.long
        is_blue = images[:, 2, 0, 0] == 255
        assert torch.equal(is_blue, labels == dm.class_names.index("blue"))


def test_recursive_false_only_reads_files_directly_in_class_folders(tmp_path):
    write_image(tmp_path / "a" / "top.png")
    write_image(tmp_path / "a" / "sub" / "nested.png")
    write_image(tmp_path / "b" / "sub" / "only_nested.png")
    index = scan_image_folder(tmp_path, recursive=False)
    assert index.class_names == ["a"]
    assert [r.relpath for r in index.records] == ["a/top.png"]


def test_flat_folder_is_unlabeled_and_yields_plain_tensors(tmp_path):
    dm = make_dm(flat_folder(tmp_path, 8))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, torch.Tensor)
    assert batch.shape == (4, 3, 8, 8) and batch.dtype == torch.uint8
    assert dm.num_classes == 0 and dm.class_names == []


def test_extensions_case_insensitive_hidden_and_other_files_ignored(tmp_path):
    write_image(tmp_path / "upper.PNG")
    write_image(tmp_path / "mixed.JpEg")
    write_image(tmp_path / ".hidden.png")
    write_image(tmp_path / ".git" / "object.png")  # hidden folder: not a class
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "Thumbs.db").write_bytes(b"\0" * 10)
    dm = make_dm(tmp_path)
    assert sorted(r.relpath for r in dm.index.records) == ["mixed.JpEg", "upper.PNG"]
    assert dm.class_names == []


def test_extensions_argument_restricts_and_normalises(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.jpg")
    dm = make_dm(tmp_path, extensions=["JPG"])
    assert [r.relpath for r in dm.index.records] == ["b.jpg"]
    with pytest.raises(ValueError, match="at least one file extension"):
        make_dm(tmp_path, extensions=[])


def test_loose_images_next_to_class_folders_are_ignored_with_a_warning(tmp_path):
    write_image(tmp_path / "loose.png")
    write_image(tmp_path / "cls" / "a.png")
    dm = make_dm(tmp_path)
    with pytest.warns(UserWarning, match=r"Ignoring 1 image.*class subfolders"):
        records = dm.index.records
    assert [r.relpath for r in records] == ["cls/a.png"]


def test_empty_folder_error_names_root_and_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "empty_class").mkdir()
    dm = make_dm(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        dm.setup()
    assert str(tmp_path) in str(error.value)
    assert ".png" in str(error.value) and ".jpeg" in str(error.value)


def test_missing_root_and_file_root_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_dm(tmp_path / "nope")
    file = write_image(tmp_path / "a.png")
    with pytest.raises(NotADirectoryError, match="is a file"):
        make_dm(file)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("image_size", 0, "image_size must be a positive integer, got 0"),
        ("channels", 2, "channels must be 1 .* got 2"),
        ("batch_size", -1, "batch_size must be a positive integer"),
        ("val_fraction", 1.0, r"val_fraction must be in \[0, 1\)"),
        ("on_error", "ignore", "on_error must be 'skip'.*'ignore'"),
        ("num_workers", -2, "num_workers must be an integer >= 0"),
    ],
)
def test_invalid_arguments_name_the_argument_and_value(tmp_path, argument, value, message):
    flat_folder(tmp_path, 1)
    with pytest.raises(ValueError, match=message):
        make_dm(tmp_path, **{argument: value})


# ----------------------------------------------------------------------------- split


def _val_set(root: Path, **kwargs) -> set[str]:
    return {r.relpath for r in make_dm(root, val_fraction=0.25, **kwargs).split_records("val")}


def test_split_is_deterministic_disjoint_and_roughly_the_requested_size(tmp_path):
    flat_folder(tmp_path, 120)
    dm = make_dm(tmp_path, val_fraction=0.25)
    train = {r.relpath for r in dm.split_records("train")}
    val = {r.relpath for r in dm.split_records("val")}
    assert train.isdisjoint(val) and len(train | val) == 120
    assert 15 <= len(val) <= 45
    assert _val_set(tmp_path) == val
    assert _val_set(tmp_path, seed=1) != val


def test_split_of_existing_files_is_stable_when_files_are_added(tmp_path):
    flat_folder(tmp_path, 60)
    before = make_dm(tmp_path, val_fraction=0.25)
    assignment = {r.relpath: "val" for r in before.split_records("val")}
    assignment.update({r.relpath: "train" for r in before.split_records("train")})
    for i in range(60, 100):
        write_image(tmp_path / f"new_{i}.png", colour_of(i))
    after = make_dm(tmp_path, val_fraction=0.25)
    after_assignment = {r.relpath: "val" for r in after.split_records("val")}
    after_assignment.update({r.relpath: "train" for r in after.split_records("train")})
    assert {k: after_assignment[k] for k in assignment} == assignment
    assert len(after_assignment) == 100


def test_val_loader_is_empty_list_without_validation_images(tmp_path):
    dm = make_dm(flat_folder(tmp_path, 4), val_fraction=0.0)
    dm.setup("fit")
    assert dm.val_dataloader() == []


def test_no_training_images_is_an_error(tmp_path):
    write_image(tmp_path / "only.png")
    dm = make_dm(tmp_path, val_fraction=0.999999)
    with pytest.raises(ValueError, match="No readable training images.*val_fraction"):
        dm.setup()


# ------------------------------------------------------------------------- bad files


def _noise_png(size: int = 48) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _make_bad_file(kind: str, root: Path, monkeypatch) -> Path:
    """Create one bad file of ``kind`` in ``root``; returns its path."""
    if kind == "empty":
        path = root / "empty.png"
        path.write_bytes(b"")
    elif kind == "truncated":
        path = root / "truncated.png"
        data = _noise_png()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not_an_image":
        path = root / "page.jpg"
        path.write_text("<html><body>404 Not Found</body></html>")
    elif kind == "decompression_bomb":
        path = write_image(root / "bomb.png", size=(200, 200))
        # Good images are 20x16 = 320 px; Pillow refuses above twice the limit.
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    elif kind == "dangling_symlink":
        path = root / "gone.png"
        os.symlink(root / "deleted_target.png", path)
    elif kind == "permission_denied":
        path = write_image(root / "secret.png")
        os.chmod(path, 0)
        if os.access(path, os.R_OK):  # running as root: permissions don't apply
            real_open = builtins.open

            def guarded_open(file, *args, **kwargs):
                if os.fspath(file) == str(path):
                    raise PermissionError(13, "Permission denied", str(path))
                return real_open(file, *args, **kwargs)

            monkeypatch.setattr(builtins, "open", guarded_open)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


BAD_KINDS = [
    "empty",
    "truncated",
    "not_an_image",
    "decompression_bomb",
    "dangling_symlink",
    "permission_denied",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_file_is_skipped_with_one_warning_naming_it(tmp_path, monkeypatch, kind):
    flat_folder(tmp_path, 8)
    bad = _make_bad_file(kind, tmp_path, monkeypatch)
    good_colours = {colour_of(i) for i in range(8)}
    dm = make_dm(tmp_path, on_error="skip")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dm.setup("fit")
        images = all_images(dm.train_dataloader())
    messages = bad_file_warnings(record)
    assert len(messages) == 1
    assert "Skipped 1 unreadable" in messages[0] and bad.name in messages[0]
    # Two full batches of 4 whether the bad file is dropped at scan time (8 items)
    # or replaced by another image when it fails to decode (9 items).
    assert images.shape[0] == 8
    assert {tuple(int(v) for v in image[:, 0, 0]) for image in images} <= good_colours


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_file_raises_an_error_naming_it(tmp_path, monkeypatch, kind):
    flat_folder(tmp_path, 7)
    bad = _make_bad_file(kind, tmp_path, monkeypatch)
    dm = make_dm(tmp_path, on_error="raise")
    with pytest.raises(ImageDecodeError, match="Could not read image file") as error:
        dm.setup("fit")
        all_images(dm.train_dataloader())
    assert bad.name in str(error.value)
    assert error.value.path is not None and error.value.path.endswith(bad.name)


# The next tests cover bad files found while streaming (in_memory=False): replaced in their batch by a
# substitute. Kept in memory (the default for small folders), bad files are found in setup and left out,
# as with cache=True (tests/test_data_in_memory.py).


def test_many_bad_files_give_one_warning_with_count_and_first_paths(tmp_path):
    flat_folder(tmp_path, 9)
    for i in range(7):
        (tmp_path / f"broken_{i}.jpg").write_bytes(b"not a jpeg at all")
    dm = make_dm(tmp_path, in_memory=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dm.setup("fit")
        first_epoch = all_images(dm.train_dataloader())
        second_epoch = all_images(dm.train_dataloader())
    messages = bad_file_warnings(record)
    assert len(messages) == 1  # not repeated in the second epoch
    assert "Skipped 7 unreadable" in messages[0] and "and 2 more" in messages[0]
    assert sum(f"broken_{i}.jpg" in messages[0] for i in range(7)) == 5
    assert first_epoch.shape[0] == second_epoch.shape[0] == 16


def test_bad_files_in_worker_processes_are_skipped_or_named(tmp_path):
    flat_folder(tmp_path, 10)
    data = _noise_png()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 3])
    (tmp_path / "fake.gif").write_text("GIF? no.")
    dm = make_dm(tmp_path, in_memory=False, num_workers=2, on_error="skip")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dm.setup("fit")
        images = all_images(dm.train_dataloader())
    messages = bad_file_warnings(record)
    assert len(messages) == 1 and "Skipped 2" in messages[0]
    assert "half.png" in messages[0] and "fake.gif" in messages[0]
    assert images.shape[0] == 12

    strict = make_dm(tmp_path, in_memory=False, num_workers=2, on_error="raise")
    strict.setup("fit")
    with pytest.raises(ImageDecodeError, match=r"(half\.png|fake\.gif)"):
        all_images(strict.train_dataloader())


def test_substitutes_for_bad_files_and_flips_do_not_depend_on_workers_or_global_rng(tmp_path):
    for i in range(10):  # left half coloured, right half black: a flip shows
        pixels = np.zeros((8, 8, 3), np.uint8)
        pixels[:, :4] = colour_of(i)
        Image.fromarray(pixels).save(tmp_path / f"img_{i:03d}.png")
    for name in ("a_broken.png", "m_broken.png"):  # sorted among the good files
        (tmp_path / name).write_bytes(b"not a png")
    batches = {}
    for workers, global_seed in ((0, 0), (2, 1234)):
        torch.manual_seed(global_seed)
        dm = make_dm(tmp_path, in_memory=False, num_workers=workers, random_flip=True)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BadImageWarning)
            batches[workers] = all_images(loader)
    assert batches[0].shape[0] == 12 and torch.equal(batches[0], batches[2])


def test_unreadable_split_stops_with_a_clear_error(tmp_path):
    write_image(tmp_path / "good.png")
    for i in range(5):
        (tmp_path / f"junk_{i}.png").write_bytes(b"junk")
    # Every substitute is bad too except one file: sometimes works, but a split of
    # only bad files must not loop forever.
    (tmp_path / "good.png").unlink()
    dm = make_dm(tmp_path, in_memory=False, batch_size=2)
    dm.setup("fit")
    with pytest.raises(ImageDecodeError, match="in a row could not be decoded"):
        all_images(dm.train_dataloader())


# --------------------------------------------------------------- batches and loaders


def test_on_after_batch_transfer_maps_uint8_to_minus_one_one(tmp_path):
    dm = make_dm(flat_folder(tmp_path, 2))
    images = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1)
    labels = torch.tensor([1])
    converted, same_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert converted.dtype == torch.float32
    assert converted.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)
    assert same_labels is labels
    floats = torch.zeros(2)
    assert dm.on_after_batch_transfer(floats, 0) is floats


def test_real_batches_reach_the_model_as_float_in_range(tmp_path):
    dm = make_dm(flat_folder(tmp_path, 12))
    dm.setup("fit")
    converted = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert converted.dtype == torch.float32
    assert converted.min() >= -1.0 and converted.max() <= 1.0
    assert converted.max() > 0.0 and converted.min() < 0.0  # colours span the range


def test_random_flip_mirrors_training_images_only(tmp_path):
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:, :8] = (255, 0, 0)
    for i in range(32):
        Image.fromarray(pixels).save(tmp_path / f"{i:02d}.png")
    dm = make_dm(tmp_path, random_flip=True, val_fraction=0.25, image_size=16)
    dm.setup("fit")
    original = torch.from_numpy(pixels.transpose(2, 0, 1).copy())
    train = all_images(dm.train_dataloader())
    flipped = [bool(torch.equal(image, original.flip(-1))) for image in train]
    assert all(f or torch.equal(image, original) for f, image in zip(flipped, train))
    assert any(flipped) and not all(flipped)
    val = all_images(dm.val_dataloader())
    assert all(torch.equal(image, original) for image in val)


def test_loader_settings_and_defaults(tmp_path):
    dm = make_dm(flat_folder(tmp_path, 10), num_workers=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers
    assert loader.pin_memory == torch.cuda.is_available()
    assert isinstance(loader.sampler, EpochShuffleSampler)
    assert loader.drop_last
    default = ImageFolderDataModule(tmp_path, image_size=8)
    assert 1 <= default.num_workers <= 4
    assert default.hparams["image_size"] == 8 and default.hparams["root"] == str(tmp_path)


def test_channels_one_gives_grayscale_batches(tmp_path):
    dm = make_dm(flat_folder(tmp_path, 4), channels=1)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).shape == (4, 1, 8, 8)


def test_fingerprint_tracks_files_and_settings(tmp_path):
    flat_folder(tmp_path, 20)
    dm = make_dm(tmp_path, val_fraction=0.3)
    train, val = dm.fingerprint("train"), dm.fingerprint("val")
    assert train != val and len(train) == 64
    assert make_dm(tmp_path, val_fraction=0.3).fingerprint() == train
    assert make_dm(tmp_path, val_fraction=0.3, image_size=16).fingerprint() != train
    first_train = make_dm(tmp_path, val_fraction=0.3).split_records("train")[0]
    os.utime(tmp_path / first_train.relpath, ns=(1, first_train.mtime_ns + 10**9))
    touched = make_dm(tmp_path, val_fraction=0.3)
    assert touched.fingerprint("train") != train and touched.fingerprint("val") == val
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        dm.fingerprint("test")


# ------------------------------------------------------------------------- sampler


def test_sampler_order_depends_on_seed_and_epoch_only():
    sampler = EpochShuffleSampler(50, seed=3)
    epoch0 = list(sampler)
    torch.manual_seed(123)  # the global RNG must not matter
    assert list(sampler) == epoch0 and sorted(epoch0) == list(range(50))
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    assert list(EpochShuffleSampler(50, seed=4)) != epoch0


def test_resumed_sampler_replays_the_uninterrupted_order():
    uninterrupted = EpochShuffleSampler(30, seed=0)
    orders = []
    for epoch in range(4):
        uninterrupted.set_epoch(epoch)
        orders.append(list(uninterrupted))
    resumed = EpochShuffleSampler(30, seed=0)  # fresh process after a checkpoint
    resumed.set_epoch(3)
    assert list(resumed) == orders[3]


def test_sampler_under_lightning_distributed_wrapper_shards_consistently():
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    shards = []
    for rank in range(2):
        wrapper = DistributedSamplerWrapper(
            EpochShuffleSampler(10, seed=0), num_replicas=2, rank=rank, shuffle=False
        )
        wrapper.set_epoch(2)  # Lightning forwards it to our sampler
        shards.append(list(wrapper))
    reference = EpochShuffleSampler(10, seed=0)
    reference.set_epoch(2)
    order = list(reference)
    assert shards[0] == order[0::2] and shards[1] == order[1::2]


def test_lightning_can_recreate_the_loader_with_a_distributed_sampler(tmp_path):
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader

    flat_folder(tmp_path, 8)
    (tmp_path / "bad.png").write_bytes(b"nope")
    dm = make_dm(tmp_path)
    dm.setup("fit")
    # What the Trainer does under DDP: capture the constructor arguments, then rebuild.
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.train_dataloader()
    sampler = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=0, shuffle=False)
    rebuilt = _update_dataloader(loader, sampler)
    assert type(rebuilt) is type(loader) and rebuilt.collate_fn is loader.collate_fn
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for epoch in range(2):
            rebuilt.sampler.set_epoch(epoch)
            batches = list(rebuilt)
            assert all(isinstance(b, torch.Tensor) and b.shape[0] == 4 for b in batches)
    assert loader.sampler.epoch == 1
    assert len(bad_file_warnings(record)) <= 1  # reported once at most (rank-0 shard)


# ------------------------------------------------------ Lightning, pickling, the CLI


class _RecordingModule:
    """Build lazily so that importing this test file doesn't import Lightning models."""

    @staticmethod
    def create():
        import lightning.pytorch as pl

        class Recording(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.weight = torch.nn.Parameter(torch.zeros(1))
                self.seen: list[tuple[torch.dtype, float, float]] = []

            def training_step(self, batch, batch_idx):
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                self.seen.append((images.dtype, float(images.min()), float(images.max())))
                return (self.weight * images.mean()).sum() + self.weight.square().sum()

            def validation_step(self, batch, batch_idx):
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                self.seen.append((images.dtype, float(images.min()), float(images.max())))

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Recording()


def _trainer(**kwargs):
    import lightning.pytorch as pl

    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_trainer_feeds_float_batches_and_sets_the_sampler_epoch(tmp_path):
    for i in range(6):
        write_image(tmp_path / "a" / f"{i}.png", colour_of(i))
        write_image(tmp_path / "b" / f"{i}.png", colour_of(i + 6))
    model = _RecordingModule.create()
    dm = make_dm(tmp_path, val_fraction=0.3)
    trainer = _trainer(max_epochs=2, limit_train_batches=2, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert model.seen and all(dtype == torch.float32 for dtype, _, _ in model.seen)
    assert all(-1.0 <= low and high <= 1.0 for _, low, high in model.seen)
    assert trainer.train_dataloader.sampler.epoch == 1


def test_trainer_runs_without_validation_images(tmp_path):
    model = _RecordingModule.create()
    trainer = _trainer(max_epochs=1, limit_train_batches=1)
    trainer.fit(model, datamodule=make_dm(flat_folder(tmp_path, 8), val_fraction=0.0))
    assert len(model.seen) == 1


def test_data_module_pickles_for_ddp_spawn(tmp_path):
    dm = make_dm(flat_folder(tmp_path, 8))
    dm.setup("fit")
    clone = pickle.loads(pickle.dumps(dm))
    clone.setup("fit")
    assert clone.class_names == dm.class_names
    assert all_images(clone.train_dataloader()).shape == (8, 3, 8, 8)


def test_constructed_from_a_lightning_cli_yaml_config(tmp_path, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    monkeypatch.setattr("sys.argv", ["lightning-gen"])  # not pytest's arguments

    root = flat_folder(tmp_path / "images", 4)
    config = tmp_path / "config.yaml"
    config.write_text(
        "data:\n"
        f"  root: {root}\n"
        "  image_size: 12\n"
        "  channels: 1\n"
        "  num_workers: 0\n"
        "  extensions: [png]\n"
        "  on_error: raise\n"
        "trainer:\n"
        "  logger: false\n"
    )
    model_class = type(_RecordingModule.create())
    cli = LightningCLI(
        model_class,
        ImageFolderDataModule,
        run=False,
        args=["--config", str(config)],
        save_config_callback=None,
    )
    dm = cli.datamodule
    assert (dm.image_size, dm.channels, dm.on_error, dm.extensions) == (12, 1, "raise", (".png",))
