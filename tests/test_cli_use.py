"""Using a trained generator from the command line: ``sample --truncation/--walk``, ``project``, ``zoo export --onnx``."""

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import lightning_gen.animation
from lightning_gen import VAE, GANModule
from lightning_gen._images import save_images, to_uint8
from lightning_gen.cli import main


def _lively(model):
    """He init instead of DCGAN's N(0, 0.02): an untrained generator's images then vary (std ~0.3, not ~1e-4)."""
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


def _folder(tmp_path, **kwargs):
    model = _lively(GANModule(image_size=16, channels=1, latent_dim=8, width=4, **kwargs))
    folder = tmp_path / "model"
    model.save_pretrained(folder, samples=False)
    return model, folder


def _png(path):
    return torch.from_numpy(np.array(Image.open(path)))


def test_sample_with_truncation_writes_the_truncated_images(tmp_path):
    model, folder = _folder(tmp_path)
    assert main(["sample", "--model", str(folder), "--n", "3", "--seed", "2", "--truncation", "0.5", "--out-dir", str(tmp_path / "pngs")]) == 0
    expected = to_uint8(model.sample(3, seed=2, truncation=0.5))
    for index in range(3):
        assert torch.equal(_png(tmp_path / "pngs" / f"{index:06d}.png"), expected[index, 0])
    assert main(["sample", "--model", str(folder), "--n", "4", "--seed", "2", "--truncation", "0.5", "--out", str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size == (2 * 18 + 2, 2 * 18 + 2)


def test_bad_truncation_is_a_usage_error(tmp_path, capsys):
    _, folder = _folder(tmp_path)
    with pytest.raises(SystemExit):
        main(["sample", "--model", str(folder), "--truncation", "1.5"])
    assert "--truncation must be in (0, 1]" in capsys.readouterr().err


def test_walk_writes_a_grid_and_an_animated_gif(tmp_path):
    model, folder = _folder(tmp_path)
    out = tmp_path / "walk.png"
    assert main(["sample", "--model", str(folder), "--walk", "3", "--steps", "4", "--seed", "0", "--out", str(out)]) == 0
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 9  # (K - 1) * steps + 1
    assert Image.open(out).size == (4 * 18 + 2, 3 * 18 + 2)  # one row per segment, then the last point
    # The first frame is the first point's image, drawn like sample()'s latents.
    first = model.walk(torch.randn(3, 8, generator=torch.Generator().manual_seed(0)), 4)[0]
    gif.seek(0)
    assert (torch.from_numpy(np.asarray(gif.convert("L"))).int() - to_uint8(first)[0].int()).abs().max() <= 1
    assert main(["sample", "--model", str(folder), "--walk", "2", "--steps", "3", "--loop", "--out", str(out), "--gif", str(tmp_path / "loop.gif")]) == 0
    assert Image.open(tmp_path / "loop.gif").n_frames == 6


def test_conditional_walks_keep_or_morph_labels(tmp_path, capsys):
    _, folder = _folder(tmp_path, num_classes=3)
    out = tmp_path / "walk.png"
    assert main(["sample", "--model", str(folder), "--walk", "3", "--steps", "2", "--labels", "0,2,1", "--out", str(out)]) == 0
    assert main(["sample", "--model", str(folder), "--walk", "3", "--steps", "2", "--labels", "2", "--out", str(out)]) == 0
    with pytest.raises(SystemExit):
        main(["sample", "--model", str(folder), "--walk", "3", "--labels", "0,1", "--out", str(out)])
    assert "give 1 or 3" in capsys.readouterr().err
    _, plain = _folder(tmp_path / "plain")
    with pytest.raises(SystemExit):
        main(["sample", "--model", str(plain), "--walk", "2", "--labels", "1", "--out", str(out)])
    assert "class-conditional" in capsys.readouterr().err


def test_a_vae_walks_through_its_prior(tmp_path):
    folder = tmp_path / "vae"
    VAE(image_size=16, channels=1, latent_dim=4, width=8).save_pretrained(folder, samples=False)
    assert main(["sample", "--model", str(folder), "--walk", "2", "--steps", "3", "--out", str(tmp_path / "w.png")]) == 0
    assert Image.open(tmp_path / "w.gif").n_frames == 4


def test_mp4_without_an_encoder_fails_clearly_after_the_gif(tmp_path, monkeypatch, capsys):
    _, folder = _folder(tmp_path)
    monkeypatch.setattr(lightning_gen.animation, "mp4_encoder", lambda: None)
    code = main(["sample", "--model", str(folder), "--walk", "2", "--steps", "2", "--out", str(tmp_path / "w.png"), "--mp4", str(tmp_path / "w.mp4")])
    assert code == 1
    assert "pip install av" in capsys.readouterr().err
    assert (tmp_path / "w.gif").is_file() and not (tmp_path / "w.mp4").exists()


def test_project_writes_latents_reconstructions_and_a_comparison(tmp_path, capsys):
    model, folder = _folder(tmp_path, num_classes=2)
    images = model.sample(2, seed=5, labels=torch.tensor([1, 1]))
    paths = save_images(images, tmp_path / "real")
    out = tmp_path / "projected"
    argv = ["project", *map(str, paths), "--model", str(folder), "--out", str(out), "--steps", "4", "--labels", "1"]
    assert main(argv) == 0
    record = torch.load(out / "000000.pt", weights_only=True)
    assert record["latent"].shape == (8,) and record["label"] == 1 and record["loss"] >= 0
    assert Image.open(out / "000001_projected.png").size == (16, 16)
    assert Image.open(out / "comparison.png").size == (2 * 18 + 2, 2 * 18 + 2)  # original | reconstruction rows
    assert "000000: loss" in capsys.readouterr().out
    # Without labels every class is tried; --format npy writes the latent alone.
    assert main(["project", str(paths[0]), "--model", str(folder), "--out", str(out), "--steps", "2", "--format", "npy"]) == 0
    assert np.load(out / "000000.npy").shape == (8,)


def test_project_reports_unreadable_files(tmp_path, capsys):
    _, folder = _folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert main(["project", str(tmp_path / "broken.png"), "--model", str(folder), "--out", str(tmp_path / "o")]) == 1
    assert "error:" in capsys.readouterr().err


def _checkpoint(tmp_path, model):
    trainer = L.Trainer(logger=False, max_epochs=0, enable_progress_bar=False)
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_zoo_export_writes_deployment_files_and_lists_them_on_the_card(tmp_path):
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=4, num_classes=2)
    checkpoint = _checkpoint(tmp_path, model)
    folder = tmp_path / "export"
    assert main(["zoo", "export", str(checkpoint), str(folder), "--onnx", "--torchscript", "--no-samples"]) == 0
    card = (folder / "README.md").read_text()
    assert "`generator.onnx`" in card and "`generator.torchscript.pt`" in card and "`labels` (batch,) int64" in card
    z, labels = torch.randn(3, 8), torch.tensor([0, 1, 1])
    loaded = torch.jit.load(str(folder / "generator.torchscript.pt"))
    with torch.no_grad():
        assert torch.equal(loaded(z, labels), model.eval()(z, labels))
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need onnxruntime: pip install 'lightning-gen[export]'")
    session = ort.InferenceSession(str(folder / "generator.onnx"), providers=["CPUExecutionProvider"])
    (images,) = session.run(None, {"z": z.numpy(), "labels": labels.numpy()})
    assert images.shape == (3, 1, 16, 16)
    # Without the flags, nothing extra is written or listed.
    plain = tmp_path / "plain"
    assert main(["zoo", "export", str(checkpoint), str(plain), "--no-samples"]) == 0
    assert not (plain / "generator.onnx").exists() and "generator.onnx" not in (plain / "README.md").read_text()
