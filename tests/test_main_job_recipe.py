"""The README's first command: its recipe loads through the command line as written, callbacks included."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_gen.cli import run_lightning_cli

RECIPES = Path(__file__).resolve().parents[1] / "zoo"


@pytest.mark.parametrize("name", ["dcgan-digits32", "vae-digits32"])
def test_digits_recipes_instantiate_through_lightning_cli(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe's run folder is relative
    cli = run_lightning_cli(["--config", str(RECIPES / name / "recipe.yaml"), "--trainer.max_epochs", "1"], run=False)
    assert type(cli.datamodule).__name__ == "DigitsDataModule" and cli.model.channels == 1
    callbacks = {type(c).__name__ for c in cli.trainer.callbacks}
    if name == "dcgan-digits32":
        assert cli.model.num_classes == 10 and cli.model.hparams.num_sample_images % 10 == 0  # one grid row per digit
        assert {"DigitsMetricsCallback", "CASCallback"} <= callbacks


def test_a_metric_callback_still_refuses_inception_settings_that_are_not_defaults():
    from lightning_gen.metrics import DigitsMetricsCallback

    with pytest.raises(TypeError, match="kid"):
        DigitsMetricsCallback(kid=True)
    DigitsMetricsCallback(kid=False)  # the base class's default, as LightningCLI passes it
