"""Stopping and resuming must end exactly where an uninterrupted run ends (CPU, fixed seed)."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins import MixedPrecision

from _core_helpers import image_loader, trainer
from lightning_gen import VAE, GANModule


def _fit(tmp_path, make_model, max_epochs, ckpt_path=None, **kwargs):
    L.seed_everything(0)
    model = make_model()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    t = trainer(tmp_path, max_epochs=max_epochs, enable_checkpointing=True, callbacks=[checkpoint], **kwargs)
    t.fit(model, image_loader(n=24, batch_size=8), ckpt_path=ckpt_path)
    return model, t


def _with_confident_discriminator(model):
    """Start D calling everything real, so ADA's p rises from the first steps and its restoration is tested."""
    model.discriminator.head.bias.data.fill_(10.0)
    return model


@pytest.mark.parametrize(
    "make_model, precision",
    [
        (lambda: GANModule(image_size=16, latent_dim=8, width=8, n_critic=2, ema_decay=0.9), "32"),
        (lambda: GANModule(image_size=16, latent_dim=8, width=8, loss="wgan-gp", n_critic=1), "16-mixed"),
        (lambda: GANModule(image_size=16, latent_dim=8, width=8, ema_decay=0.9, ema_batchnorm="recompute"), "32"),
        (lambda: VAE(image_size=16, latent_dim=4, width=8, adversarial_weight=0.1), "32"),
        (lambda: _with_confident_discriminator(GANModule(image_size=16, latent_dim=8, width=8, augment="ada", ada_speed_images=500, ada_interval=1, lecam_weight=0.1, r1_weight=1.0)), "32"),
    ],
    ids=["gan-ema-ncritic2", "gan-wgan-gp-fp16", "gan-ema-recompute-bn", "vae-gan", "gan-ada-lecam-r1"],
)
def test_resume_matches_uninterrupted_run(tmp_path, make_model, precision):
    # A fresh plugin (and GradScaler) per run: the resumed run must get its scaler state from the checkpoint.
    kwargs = lambda: dict(plugins=[MixedPrecision("16-mixed", "cpu")]) if precision == "16-mixed" else {}  # noqa: E731
    full, full_trainer = _fit(tmp_path / "full", make_model, max_epochs=3, **kwargs())
    _fit(tmp_path / "split", make_model, max_epochs=2, **kwargs())
    resumed, resumed_trainer = _fit(tmp_path / "split", make_model, max_epochs=3, ckpt_path="last", **kwargs())

    assert resumed.generator_step == full.generator_step
    if precision == "32":  # under fp16 the GradScaler may skip (and the module not count) early steps
        assert full.generator_step == 9 // full.hparams.get("n_critic", 1)
    assert resumed_trainer.global_step == full_trainer.global_step
    full_state, resumed_state = full.state_dict(), resumed.state_dict()
    assert full_state.keys() == resumed_state.keys()
    for name in full_state:
        # includes EMA weights, BN statistics, ADA's p and LeCam's anchors
        assert torch.equal(full_state[name], resumed_state[name]), name
    for full_opt, resumed_opt in zip(full_trainer.optimizers, resumed_trainer.optimizers):
        for a, b in zip(full_opt.state_dict()["state"].values(), resumed_opt.state_dict()["state"].values()):
            assert all(torch.equal(a[k], b[k]) for k in a)
    if getattr(full, "augment", None) is not None:
        assert full.augment.p.item() > 0  # ADA moved p, so its exact restoration is tested
    if precision == "16-mixed":
        assert full_trainer.precision_plugin.scaler.get_scale() == resumed_trainer.precision_plugin.scaler.get_scale()
