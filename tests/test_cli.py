"""The ``lightning-gen`` command: LightningCLI sub-commands and ``sample``."""


import pytest
import torch
import yaml
from PIL import Image

from lightning_gen import GANModule
from lightning_gen.cli import main, run_lightning_cli


def _tiny_config(tmp_path, model_class="lightning_gen.GANModule", model_args=None):
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 1,
            "default_root_dir": str(tmp_path / "run"),
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "run")}},
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "model": {"class_path": model_class, "init_args": {"image_size": 16, "latent_dim": 8, "width": 8, "num_sample_images": 4, **(model_args or {})}},
        "data": {
            "class_path": "lightning_gen.data.ShapesDataModule",
            "init_args": {"image_size": 16, "num_images": 64, "batch_size": 16, "num_workers": 0, "val_fraction": 0.25},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_from_config_trains_and_writes_grids_and_checkpoint(tmp_path):
    assert main(["fit", "--config", str(_tiny_config(tmp_path))]) == 0
    run = tmp_path / "run" / "lightning_logs" / "version_0"
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["samples_epoch000_step0000003.png"]
    checkpoints = list((run / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 1
    assert (run / "config.yaml").is_file()  # LightningCLI saved the resolved config next to the logs
    # And sample from it, as a grid and as individual files.
    grid = tmp_path / "grid.png"
    assert main(["sample", "--ckpt", str(checkpoints[0]), "--n", "9", "--out", str(grid), "--seed", "1"]) == 0
    assert Image.open(grid).size == (3 * 18 + 2, 3 * 18 + 2)
    assert main(["sample", "--ckpt", str(checkpoints[0]), "--n", "5", "--out-dir", str(tmp_path / "pngs"), "--batch-size", "2", "--seed", "1"]) == 0
    files = sorted((tmp_path / "pngs").glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(files[0]).size == (16, 16)


def test_seeded_out_dir_samples_do_not_depend_on_batch_size(tmp_path):
    model = GANModule(image_size=16, latent_dim=8, width=8)
    import lightning as L

    trainer = L.Trainer(logger=False, max_epochs=0, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    for batch_size in (2, 3):
        main(["sample", "--ckpt", str(tmp_path / "m.ckpt"), "--n", "6", "--out-dir", str(tmp_path / f"b{batch_size}"), "--batch-size", str(batch_size), "--seed", "0"])
    # Seeds are per batch start, so only images at batch boundaries shared by both runs coincide.
    a = (tmp_path / "b2" / "000000.png").read_bytes()
    assert a == (tmp_path / "b3" / "000000.png").read_bytes()


def test_vae_selectable_by_class_and_two_optimizers_configurable(tmp_path):
    config = _tiny_config(tmp_path, model_class="lightning_gen.VAE", model_args={"latent_dim": 4, "adversarial_weight": 0.1, "lr": 5e-4})
    cli = run_lightning_cli(["--config", str(config)], run=False)
    assert type(cli.model).__name__ == "VAE"
    opt_vae, opt_d = cli.model.configure_optimizers()
    assert opt_vae.defaults["lr"] == 5e-4 and opt_d.defaults["lr"] == 2e-4


def test_gan_optimizers_from_class_paths(tmp_path):
    config = _tiny_config(tmp_path)
    cli = run_lightning_cli(
        [
            "--config", str(config),
            "--model.g_optimizer", "torch.optim.RMSprop", "--model.g_optimizer.lr", "5e-5",
            "--model.d_optimizer", "torch.optim.SGD", "--model.d_optimizer.lr", "0.01",
            "--model.loss", "hinge",
        ],
        run=False,
    )
    opt_g, opt_d = cli.model.configure_optimizers()
    assert isinstance(opt_g, torch.optim.RMSprop) and opt_g.defaults["lr"] == 5e-5
    assert isinstance(opt_d, torch.optim.SGD) and opt_d.defaults["lr"] == 0.01
    assert cli.model.hparams.loss == "hinge"


def test_short_class_names_select_model_and_data(tmp_path):
    cli = run_lightning_cli(
        ["--model", "GANModule", "--model.image_size", "16", "--data", "ShapesDataModule", "--data.image_size", "16", "--trainer.logger", "false"],
        run=False,
    )
    assert type(cli.model).__name__ == "GANModule" and type(cli.datamodule).__name__ == "ShapesDataModule"


def test_print_config_lists_both_optimizer_settings(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(_tiny_config(tmp_path)), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {"lr_g", "lr_d", "betas_g", "betas_d", "g_optimizer", "d_optimizer"} <= set(printed["model"]["init_args"])


def test_bad_model_argument_is_reported(tmp_path):
    with pytest.raises(ValueError, match=r"loss must be one of \('bce', 'hinge', 'wgan-gp'\), got 'nope'"):
        main(["fit", "--config", str(_tiny_config(tmp_path, model_args={"loss": "nope"}))])


def test_sample_errors_are_clear(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="missing.ckpt' does not exist"):
        main(["sample", "--ckpt", str(tmp_path / "missing.ckpt")])
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="was not written by a lightning-gen module"):
        main(["sample", "--ckpt", str(tmp_path / "other.ckpt")])
    with pytest.raises(SystemExit):
        main(["sample", "--ckpt", "x.ckpt", "--n", "0"])
    assert "--n and --batch-size must be >= 1" in capsys.readouterr().err


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("fit", "sample", "make-shapes", "fid", "zoo", "sweep"))
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_sample_from_a_checkpoint_trained_on_an_image_folder(tmp_path):
    # The data module's hyper-parameters put pathlib objects into the checkpoint; they must load safely.
    from lightning_gen.data import write_shapes_folder

    write_shapes_folder(tmp_path / "images", n=32, image_size=16, seed=0)
    config = _tiny_config(tmp_path)
    data = {"class_path": "lightning_gen.data.ImageFolderDataModule", "init_args": {"root": str(tmp_path / "images"), "image_size": 16, "batch_size": 16, "num_workers": 0}}
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "data": data}))
    assert main(["fit", "--config", str(config)]) == 0
    (checkpoint,) = (tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    assert main(["sample", "--ckpt", str(checkpoint), "--n", "4", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").is_file()


def test_validate_and_test_subcommands_run_on_a_checkpoint(tmp_path):
    config = _tiny_config(tmp_path, model_class="lightning_gen.VAE", model_args={"latent_dim": 4})
    assert main(["fit", "--config", str(config)]) == 0
    (checkpoint,) = (tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    for command, prefix in (("validate", "val"), ("test", "test")):
        cli = run_lightning_cli([command, "--config", str(config), "--ckpt_path", str(checkpoint)], run=True)
        metrics = cli.trainer.callback_metrics
        assert {f"{prefix}/elbo", f"{prefix}/reconstruction", f"{prefix}/kl"} <= set(metrics), (command, set(metrics))


def test_predict_writes_one_png_per_seed(tmp_path):
    config = _tiny_config(tmp_path)
    assert main(["fit", "--config", str(config)]) == 0
    (checkpoint,) = (tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    out = tmp_path / "synthetic"
    argv = ["predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--data", "SeedDataModule", "--data.n", "5"]
    argv += ["--data.start", "3", "--trainer.callbacks+=lightning_gen.predict.ImageWriter", "--trainer.callbacks.out_dir", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"{s:06d}.png" for s in range(3, 8)]
    model = GANModule.load_from_checkpoint(checkpoint, weights_only=True)
    expected = model.sample(1, seed=4)
    written = torch.from_numpy(__import__("numpy").asarray(Image.open(out / "000004.png"))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(written, expected[0], atol=1 / 127.5 + 1e-6)  # the PNG of seed 4 is sample(1, seed=4)


@pytest.mark.parametrize(
    "model_args, expected",
    [([], (16, 1)), (["--model.image_size", "16", "--model.channels", "1"], (16, 1)), (["--model.image_size", "32"], (32, 1))],
    ids=["from-data", "same-on-both", "explicit-model-value-kept"],
)
def test_model_takes_image_size_and_channels_from_the_data_module(model_args, expected):
    argv = ["--model", "GANModule", "--model.width", "8", *model_args, "--data", "ShapesDataModule"]
    argv += ["--data.image_size", "16", "--data.channels", "1", "--data.num_images", "32"]
    cli = run_lightning_cli(argv, run=False)
    assert (cli.model.hparams.image_size, cli.model.hparams.channels) == expected
    assert cli.model.hparams.num_classes == 0  # labels in the data don't make the model conditional
