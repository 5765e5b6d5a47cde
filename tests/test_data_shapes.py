"""Procedural shapes: determinism, factors, data module, folder writer and CLI."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gen.data import ImageFolderDataModule, ShapesDataModule, ShapesDataset
from lightning_gen.data.shapes import (
    BACKGROUND_COLOURS,
    COLOURS,
    SHAPE_KINDS,
    make_shapes_main,
    write_shapes_folder,
)


def test_images_depend_only_on_seed_and_index():
    a = ShapesDataset(num_images=20, image_size=16, seed=5)
    b = ShapesDataset(num_images=20, image_size=16, seed=5)
    order = [7, 3, 19, 0]
    for index in order:  # any order, fresh objects: same pixels and labels
        assert torch.equal(a[index][0], b[index][0]) and a[index][1] == b[index][1]
    other_seed = ShapesDataset(num_images=20, image_size=16, seed=6)
    assert not all(torch.equal(a[i][0], other_seed[i][0]) for i in range(5))
    assert not torch.equal(a[0][0], a[1][0])


def test_items_are_uint8_chw_with_shape_labels():
    dataset = ShapesDataset(num_images=30, image_size=16, channels=3)
    for index in range(30):
        image, label = dataset[index]
        assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
        assert dataset.class_names[label] == dataset.factors(index)["shape"]
    gray = ShapesDataset(num_images=2, image_size=12, channels=1)
    assert gray[0][0].shape == (1, 12, 12)


def test_every_kind_colour_and_background_occurs():
    table = ShapesDataset(num_images=400, image_size=8, shapes=SHAPE_KINDS).factor_table()
    assert set(table["shape"]) == set(SHAPE_KINDS)
    assert set(table["colour"]) == set(COLOURS)
    assert set(table["background"]) == {"plain", "gradient"}
    assert set(table["background_colour"]) == set(BACKGROUND_COLOURS)
    assert len(table["index"]) == 400 and table["rotation"].std() > 50


def test_factors_describe_the_drawn_image():
    dataset = ShapesDataset(num_images=40, image_size=32, shapes=SHAPE_KINDS)
    for index in range(40):
        factors = dataset.factors(index)
        half = factors["scale"] / 2
        assert half <= factors["x"] <= 1 - half and half <= factors["y"] <= 1 - half
        image = dataset[index][0].numpy()
        # The centre of every shape kind is inside the shape: it has the shape colour.
        column = min(int(factors["x"] * 32), 31)
        row = min(int(factors["y"] * 32), 31)
        centre = image[:, row, column].astype(int)
        assert np.abs(centre - np.array(COLOURS[factors["colour"]])).max() <= 2
        # The corners are background: dark, far from the shape colour.
        assert image[:, 0, 0].max() <= 90


def test_edges_are_antialiased():
    dataset = ShapesDataset(num_images=50, image_size=32, shapes=("circle",))
    index = next(i for i in range(50) if dataset.factors(i)["background"] == "plain")
    factors = dataset.factors(index)
    pixels = dataset[index][0].numpy().reshape(3, -1).T.astype(int)
    background = np.array(BACKGROUND_COLOURS[factors["background_colour"]])
    shape = np.array(COLOURS[factors["colour"]])
    pure = (pixels == background).all(axis=1) | (np.abs(pixels - shape) <= 1).all(axis=1)
    # A hard-edged drawing has only the two pure colours; supersampling blends the rim.
    assert (~pure).sum() >= 8
    low, high = np.minimum(background, shape), np.maximum(background, shape)
    assert ((pixels >= low - 1) & (pixels <= high + 1)).all()


def test_factor_and_index_errors_name_the_problem():
    with pytest.raises(ValueError, match="shapes must be a non-empty selection"):
        ShapesDataset(shapes=("circle", "blob"))
    with pytest.raises(ValueError, match="lists a kind twice"):
        ShapesDataset(shapes=("circle", "circle"))
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        ShapesDataset(seed=-1)
    with pytest.raises(IndexError, match="out of range"):
        ShapesDataset(num_images=3).factors(3)


def test_data_module_defaults_and_batches():
    dm = ShapesDataModule(num_images=100, image_size=16, batch_size=8)
    assert (dm.image_size, dm.channels, dm.num_classes) == (16, 3, 3)
    assert dm.class_names == ["circle", "square", "triangle"]
    assert dm.hparams["num_images"] == 100 and dm.num_workers == 0
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, tuple) and len(batch) == 2
    images, labels = batch
    assert images.shape == (8, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.dtype == torch.long and labels.max() < 3
    converted = dm.on_after_batch_transfer((images, labels), 0)[0]
    assert converted.dtype == torch.float32 and -1 <= converted.min() < converted.max() <= 1
    defaults = ShapesDataModule()
    assert (defaults.image_size, defaults.batch_size) == (32, 64)
    assert defaults.num_images >= 10000 and defaults.val_fraction <= 0.1


def test_data_module_splits_do_not_overlap_and_match_the_dataset():
    dm = ShapesDataModule(num_images=50, image_size=8, val_fraction=0.2, batch_size=5)
    dm.setup("fit")
    val = torch.cat([b[0] for b in dm.val_dataloader()])
    assert val.shape[0] == 10
    reference = ShapesDataset(num_images=50, image_size=8)
    assert torch.equal(val[0], reference[40][0])  # validation continues after training
    assert dm.fingerprint("train") != dm.fingerprint("val")
    assert ShapesDataModule(num_images=50, image_size=8, seed=1).fingerprint() != dm.fingerprint()


def test_in_memory_and_on_the_fly_give_the_same_batches():
    common = {"num_images": 24, "image_size": 8, "batch_size": 6, "val_fraction": 0.0}
    in_memory = ShapesDataModule(**common, in_memory=True)
    on_the_fly = ShapesDataModule(**common, in_memory=False, num_workers=0)
    in_memory.setup()
    on_the_fly.setup()
    for a, b in zip(in_memory.train_dataloader(), on_the_fly.train_dataloader()):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert in_memory.val_dataloader() == []


def test_train_order_changes_per_epoch_and_pickles():
    dm = ShapesDataModule(num_images=40, image_size=8, batch_size=40, val_fraction=0.0)
    dm.setup()
    loader = dm.train_dataloader()
    first = next(iter(loader))[1]
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))[1])
    clone = pickle.loads(pickle.dumps(dm))
    assert clone._datasets == {}  # rendered images are not pickled
    clone.setup()
    assert torch.equal(next(iter(clone.train_dataloader()))[1], first)


def test_write_shapes_folder_round_trips_through_the_image_folder(tmp_path):
    folder = write_shapes_folder(tmp_path / "shapes", n=30, image_size=16, seed=2)
    kinds = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert kinds == ["circle", "square", "triangle"]
    assert sum(len(list((folder / k).glob("*.png"))) for k in kinds) == 30
    with open(folder / "factors.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and rows[0]["path"].startswith(rows[0]["shape"] + "/")
    dataset = ShapesDataset(num_images=30, image_size=16, seed=2)
    image = np.asarray(Image.open(folder / rows[4]["path"])).transpose(2, 0, 1)
    assert np.array_equal(image, dataset[4][0].numpy())  # PNG is lossless
    dm = ImageFolderDataModule(folder, image_size=16, num_workers=0, val_fraction=0.0)
    assert dm.class_names == kinds and len(dm.index.records) == 30  # factors.csv ignored


def test_write_shapes_folder_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "existing.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        write_shapes_folder(tmp_path, n=2)


def test_make_shapes_command(tmp_path, capsys):
    target = tmp_path / "out"
    code = make_shapes_main(
        [str(target), "--n", "12", "--image-size", "8", "--seed", "1", "--channels", "1"]
    )
    assert code == 0
    files = sorted(target.glob("*/*.png"))
    assert len(files) == 12 and Image.open(files[0]).mode == "L"
    assert Image.open(files[0]).size == (8, 8)
    assert "Wrote 12 images" in capsys.readouterr().out
    assert make_shapes_main([str(target), "--n", "3"]) == 1  # not empty any more
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        make_shapes_main(["--help"])
    assert exit_info.value.code == 0
    assert "lightning-gen make-shapes" in capsys.readouterr().out
