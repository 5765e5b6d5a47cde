"""Conditional sampling where users reach for it: ``lightning-gen sample --labels``, class subfolders that
ImageFolderDataModule reads back with the same labels, and the same through ``trainer.predict``."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gen import GANModule
from lightning_gen.cli import main
from lightning_gen.data import ImageFolderDataModule
from lightning_gen.predict import ImageWriter, SeedDataModule
from lightning_gen.sampling import class_folder_names, parse_labels

QUANTIZATION = 1 / 127.5 + 1e-6  # a PNG holds the image rounded to uint8


def _checkpoint(tmp_path, num_classes: int):
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=4, num_classes=num_classes)
    trainer = L.Trainer(logger=False, max_epochs=0, enable_progress_bar=False)
    trainer.strategy.connect(model)
    path = tmp_path / f"gan{num_classes}.ckpt"
    trainer.save_checkpoint(path)
    return model.eval(), path


def _png(path) -> torch.Tensor:
    array = np.asarray(Image.open(path), dtype=np.float32)
    return torch.from_numpy(array)[None] / 127.5 - 1


def _read_back(folder) -> ImageFolderDataModule:
    return ImageFolderDataModule(folder, image_size=16, channels=1, val_fraction=0.0, random_flip=False)


def test_labels_parse_lists_and_ranges_and_name_the_fix():
    assert parse_labels("0-9", 10) == list(range(10))
    assert parse_labels("0,3,7", 10) == [0, 3, 7]
    assert parse_labels(" 2-4, 8 ", 10) == [2, 3, 4, 8]
    with pytest.raises(ValueError, match="unconditional.*num_classes=10"):
        parse_labels("0-9", 0)
    with pytest.raises(ValueError, match=r"\[10, 11\] out of range.*labels 0-9"):
        parse_labels("8-11", 10)
    for bad in ("a", "3-1", "1,,2", "-1"):
        with pytest.raises(ValueError, match="0-9"):
            parse_labels(bad, 10)


def test_class_folders_sort_in_label_order():
    assert class_folder_names(10) == [str(d) for d in range(10)]
    names = class_folder_names(12)
    assert names == sorted(names) and names[10] == "10"
    assert class_folder_names(2, ["cat", "dog"]) == ["cat", "dog"]


def test_grid_has_one_row_per_class(tmp_path, capsys):
    model, checkpoint = _checkpoint(tmp_path, 10)
    grid = tmp_path / "grid.png"
    assert main(["sample", "--ckpt", str(checkpoint), "--labels", "0-9", "--n", "80", "--out", str(grid), "--seed", "3"]) == 0
    assert "10 classes x 8 images" in capsys.readouterr().out
    tiles = np.asarray(Image.open(grid))
    assert tiles.shape[:2] == (10 * 18 + 2, 8 * 18 + 2)  # 16 px tiles, 2 px padding: 10 rows of 8
    # Row r, column c is sample(80, seed, labels)[8 r + c], whose label is r.
    expected = model.sample(80, seed=3, labels=torch.arange(10).repeat_interleave(8))
    row, column = 7, 5
    tile = tiles[2 + row * 18 : 2 + row * 18 + 16, 2 + column * 18 : 2 + column * 18 + 16]
    tile = torch.from_numpy(np.asarray(tile, dtype=np.float32)).reshape(16, 16, -1)[..., 0] / 127.5 - 1
    assert torch.allclose(tile, expected[8 * row + column, 0], atol=QUANTIZATION)
    assert main(["sample", "--ckpt", str(checkpoint), "--labels", "0,3,7", "--per-class", "2", "--out", str(grid)]) == 0
    assert np.asarray(Image.open(grid)).shape[:2] == (3 * 18 + 2, 2 * 18 + 2)


def test_out_dir_writes_class_folders_that_read_back_with_the_same_labels(tmp_path):
    model, checkpoint = _checkpoint(tmp_path, 10)
    out = tmp_path / "synthetic"
    argv = ["sample", "--ckpt", str(checkpoint), "--labels", "2,5-6", "--per-class", "3", "--out-dir", str(out)]
    assert main([*argv, "--seed", "0", "--batch-size", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["2", "5", "6"]
    dm = _read_back(out)
    records = dm.split_records("train")
    assert dm.class_names == ["2", "5", "6"] and len(records) == 9
    # ImageFolderDataModule's label i is class_names[i], which is the digit the images were drawn for.
    assert all(dm.class_names[r.label] == r.relpath.split("/")[0] for r in records)
    expected = model.sample(9, seed=0, labels=torch.tensor([2, 5, 6]).repeat_interleave(3))
    assert torch.allclose(_png(out / "5" / "000001.png"), expected[4], atol=QUANTIZATION)
    # All ten digits: folders 0-9 and labels 0-9, the same numbering as the model's.
    assert main(["sample", "--ckpt", str(checkpoint), "--labels", "all", "--per-class", "1", "--out-dir", str(tmp_path / "all")]) == 0
    assert _read_back(tmp_path / "all").class_names == [str(d) for d in range(10)]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--labels", "0-12"], "out of range"),
        (["--labels", "0-9", "--n", "64"], "multiple of 10"),
        (["--per-class", "3"], "needs --labels"),
        (["--labels", "0-9", "--nrow", "4"], "one row per class"),
    ],
    ids=["out-of-range", "uneven-n", "per-class-alone", "nrow"],
)
def test_wrong_labels_are_clear_errors(tmp_path, capsys, extra, message):
    _, checkpoint = _checkpoint(tmp_path, 10)
    with pytest.raises(SystemExit):
        main(["sample", "--ckpt", str(checkpoint), *extra])
    assert message in capsys.readouterr().err


def test_labels_for_an_unconditional_model_are_a_clear_error(tmp_path, capsys):
    _, checkpoint = _checkpoint(tmp_path, 0)
    with pytest.raises(SystemExit):
        main(["sample", "--ckpt", str(checkpoint), "--labels", "0-9"])
    assert "unconditional" in capsys.readouterr().err


def _predict(model, datamodule, out):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[ImageWriter(out)])
    trainer.predict(model, datamodule=datamodule, return_predictions=False)


def test_predict_with_labels_writes_class_subfolders(tmp_path):
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=4, num_classes=10).eval()
    out = tmp_path / "predicted"
    _predict(model, SeedDataModule(labels="0-2", per_class=2, batch_size=4), out)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["0/000000.png", "0/000001.png", "1/000002.png", "1/000003.png", "2/000004.png", "2/000005.png"]
    # Seed s with label l is sample(1, seed=s, labels=[l]).
    expected = model.sample(1, seed=3, labels=torch.tensor([1]))
    assert torch.allclose(_png(out / "1" / "000003.png"), expected[0], atol=QUANTIZATION)
    dm = _read_back(out)
    assert dm.class_names == ["0", "1", "2"] and [r.label for r in dm.split_records("train")] == [0, 0, 1, 1, 2, 2]


def test_predict_with_labels_refuses_wrong_labels(tmp_path):
    unconditional = GANModule(image_size=16, channels=1, latent_dim=8, width=4)
    with pytest.raises(ValueError, match="unconditional"):
        _predict(unconditional, SeedDataModule(labels="0-9", per_class=1), tmp_path / "a")
    conditional = GANModule(image_size=16, channels=1, latent_dim=8, width=4, num_classes=3)
    with pytest.raises(ValueError, match="out of range"):
        _predict(conditional, SeedDataModule(labels=[0, 5], per_class=1), tmp_path / "b")
    with pytest.raises(ValueError, match="per_class"):
        SeedDataModule(n=7, labels="0-2")


def test_training_grid_of_a_conditional_gan_has_one_row_per_class(monkeypatch):
    import lightning_gen.gan as gan_module
    from lightning_gen import GANModule

    captured = {}
    monkeypatch.setattr(gan_module, "log_image_grid", lambda trainer, tag, images, nrow=None: captured.update(images=images, nrow=nrow))
    model = GANModule(image_size=16, channels=1, latent_dim=4, width=4, num_classes=5, num_sample_images=15)
    model._trainer = object()  # stands in for the Trainer the grid would be logged to (log_image_grid is replaced)
    model.log_sample_grids()
    assert captured["nrow"] == 3 and captured["images"].shape[0] == 15
    # Row r holds the three fixed-noise images drawn for class r, in their original order.
    with torch.no_grad():
        expected = model.sampling_generator.eval()(model.fixed_noise, model.fixed_labels)
    order = torch.argsort(model.fixed_labels, stable=True)
    assert model.fixed_labels[order].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert torch.allclose(captured["images"], expected[order])
