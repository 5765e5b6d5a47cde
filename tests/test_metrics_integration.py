"""The metric callbacks on the library's own GANModule and VAE, trained on ShapesDataModule (tiny sizes)."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
from _metrics_fixtures import TinyFeatures
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_gen import VAE, GANModule
from lightning_gen.data import ShapesDataModule
from lightning_gen.metrics import FIDCallback


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: GANModule(image_size=16, latent_dim=8, width=8, ema_decay=0.9),
        lambda: VAE(image_size=16, latent_dim=4, width=8),
    ],
    ids=["gan", "vae"],
)
def test_fid_callback_drives_model_checkpoint(tmp_path, make_model):
    model = make_model()
    datamodule = ShapesDataModule(image_size=16, num_images=48, batch_size=8, val_fraction=0.0)
    callback = FIDCallback(
        kid=True, inception_score=True, feature_extractor=TinyFeatures(), num_samples=32, batch_size=16,
        kid_subset_size=16, kid_subsets=4, cache_dir=tmp_path / "cache",
    )
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/fid", mode="min")
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, limit_train_batches=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[callback, checkpoint], default_root_dir=str(tmp_path),
    )
    trainer.fit(model, datamodule=datamodule)

    assert math.isfinite(float(trainer.callback_metrics["val/fid"]))
    assert {"val/is", "val/kid"} <= set(trainer.callback_metrics)
    assert checkpoint.best_model_score is not None and checkpoint.best_model_path
    protocol = callback.last_result.protocol
    assert protocol.real_fingerprint == datamodule.fingerprint("train")
    assert protocol.n_real == 48 and protocol.n_fake == 32
    assert model.training  # train mode restored after the evaluation
