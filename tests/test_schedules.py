import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from _core_helpers import trainer
from lightning_gen import GANModule
from lightning_gen.data import ShapesDataModule
from lightning_gen.schedules import R3GAN_SCHEDULES, CosineRamp, R3GANSchedule, cosine_ramp, ema_decay_from_half_life


def test_cosine_ramp_at_start_middle_end_and_after():
    assert cosine_ramp(0, 2e-4, 5e-5, 1000) == 2e-4
    assert cosine_ramp(500, 2e-4, 5e-5, 1000) == pytest.approx((2e-4 + 5e-5) / 2, rel=1e-12)
    assert cosine_ramp(1000, 2e-4, 5e-5, 1000) == 5e-5
    assert cosine_ramp(10**9, 2e-4, 5e-5, 1000) == 5e-5
    # A quarter of the way: the start keeps (1 + cos(pi / 4)) / 2 of the weight (R3GAN's cosine_decay_with_warmup).
    weight = (1 + math.cos(math.pi / 4)) / 2
    assert cosine_ramp(250, 0.9, 0.99, 1000) == pytest.approx(0.9 * weight + 0.99 * (1 - weight), rel=1e-12)
    assert cosine_ramp(0, 1.0, 3.0, 0) == 3.0  # an empty ramp is its end value


@pytest.mark.parametrize("start, end", [(2e-4, 5e-5), (0.9, 0.99), (0.0, 5e6)])
def test_cosine_ramp_is_monotone_and_flat_at_both_ends(start, end):
    values = [cosine_ramp(n, start, end, 10_000) for n in range(0, 12_001, 100)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(s * (end - start) >= 0 for s in steps)  # never moves against the direction of the ramp
    assert abs(steps[0]) < abs(steps[50]) and abs(steps[99]) < abs(steps[50])  # slow at both ends
    assert values[-1] == values[-20] == end


def test_ema_decay_from_half_life():
    # After half_life / batch updates an old value's weight is one half, whatever the batch size.
    for batch in (1, 64, 512):
        decay = ema_decay_from_half_life(10_240, batch)
        assert decay ** (10_240 / batch) == pytest.approx(0.5, rel=1e-12)
    assert ema_decay_from_half_life(0, 64) == 0.0
    with pytest.raises(ValueError, match="half_life_images must be >= 0"):
        ema_decay_from_half_life(-1, 64)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ema_decay_from_half_life(100, 0)


def test_presets_hold_the_paper_values():
    cifar = R3GAN_SCHEDULES["cifar10"]
    assert (cifar["lr"].start, cifar["lr"].end, cifar["lr"].images) == (2e-4, 5e-5, 2e7)
    assert (cifar["gamma"].start, cifar["gamma"].end) == (0.05, 0.005)
    assert (cifar["beta2"].start, cifar["beta2"].end) == (0.9, 0.99)
    assert (cifar["ema_half_life"].start, cifar["ema_half_life"].end) == (0.0, 5e6)
    assert (cifar["augment_p"].start, cifar["augment_p"].end) == (0.0, 0.55)
    schedule = R3GANSchedule(preset="cifar10", gamma=CosineRamp(1.0, 0.1, 100))  # explicit ramps override
    assert schedule.values(50)["gamma"] == pytest.approx(0.55) and schedule.values(0)["lr"] == 2e-4
    with pytest.raises(ValueError, match=r"preset must be one of \['cifar10', 'ffhq64', 'imagenet32'\]"):
        R3GANSchedule(preset="cifar100")
    with pytest.raises(ValueError, match="needs at least one ramp"):
        R3GANSchedule()


def test_apply_sets_optimizers_and_module_values():
    model = GANModule(image_size=16, latent_dim=8, width=4, r1_weight=1.0, ema_decay=0.5, augment="diffaugment", n_critic=2)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=1.0, betas=(0.0, 0.5))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=1.0, betas=(0.0, 0.5))
    schedule = R3GANSchedule(
        lr=CosineRamp(2e-4, 5e-5, 1000),
        beta2=CosineRamp(0.9, 0.99, 1000),
        gamma=CosineRamp(0.05, 0.005, 1000),
        ema_half_life=CosineRamp(0.0, 640.0, 1000),
        augment_p=CosineRamp(0.0, 0.5, 1000),
    )
    schedule.images_seen = 500
    values = schedule.apply(model, [opt_g, opt_d], images_per_batch=16)
    for opt in (opt_g, opt_d):
        assert opt.param_groups[0]["lr"] == values["lr"] == pytest.approx(1.25e-4)
        assert opt.param_groups[0]["betas"] == (0.0, values["beta2"])  # beta1 kept
    assert model.hparams.r1_weight == values["gamma"] == pytest.approx(0.0275)
    # One EMA update per generator step = n_critic batches of 16 images; half-life 320 images at the midpoint.
    assert model.generator_ema.decay == pytest.approx(0.5 ** (2 * 16 / 320))
    assert model.augment.p.item() == pytest.approx(0.25)


def test_schedule_refuses_what_it_cannot_set(tmp_path):
    data = ShapesDataModule(image_size=16, num_images=8, batch_size=4, val_fraction=0.0)
    model = GANModule(image_size=16, latent_dim=8, width=4)
    for ramps, match in (
        ({"augment_p": CosineRamp(0, 0.5, 10)}, "needs a module with augmentation"),
        ({"ema_half_life": CosineRamp(0, 100, 10)}, "needs a module with an EMA generator"),
    ):
        with pytest.raises(ValueError, match=match):
            trainer(tmp_path, max_steps=1, callbacks=[R3GANSchedule(**ramps)]).fit(model, datamodule=data)
    ada = GANModule(image_size=16, latent_dim=8, width=4, augment="ada")
    with pytest.raises(ValueError, match="fight ADA"):
        trainer(tmp_path, max_steps=1, callbacks=[R3GANSchedule(augment_p=CosineRamp(0, 0.5, 10))]).fit(ada, datamodule=data)


class _Recorder(L.Callback):
    """What the schedule set, read before each batch's step (after the schedule, which runs first)."""

    def __init__(self):
        self.rows = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        opt_g, opt_d = trainer.optimizers
        self.rows.append(
            (
                opt_g.param_groups[0]["lr"],
                opt_d.param_groups[0]["betas"],
                pl_module.hparams.r1_weight,
                pl_module.generator_ema.decay,
                float(pl_module.augment.p),
            )
        )


def _ramps():
    # 12 batches of 8 images in 3 epochs: the ramps end after 64 images, inside epoch 3.
    return dict(
        lr=CosineRamp(2e-4, 5e-5, 64),
        beta2=CosineRamp(0.9, 0.99, 64),
        gamma=CosineRamp(1.0, 0.1, 64),
        ema_half_life=CosineRamp(0.0, 80.0, 64),
        augment_p=CosineRamp(0.0, 0.4, 64),
    )


def _fit(directory, max_epochs, ckpt_path=None):
    L.seed_everything(0)
    model = GANModule(image_size=16, latent_dim=8, width=4, r1_weight=1.0, ema_decay=0.9, augment="diffaugment", betas_g=(0.0, 0.9), betas_d=(0.0, 0.9))
    schedule, recorder = R3GANSchedule(**_ramps()), _Recorder()
    data = ShapesDataModule(image_size=16, num_images=32, batch_size=8, val_fraction=0.0)
    t = trainer(directory, max_epochs=max_epochs, enable_checkpointing=True, callbacks=[schedule, recorder, ModelCheckpoint(dirpath=directory / "ckpt", save_last=True)])
    t.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return schedule, recorder, model


def test_training_follows_the_ramps_and_resumes_exactly(tmp_path):
    full, full_rows, full_model = _fit(tmp_path / "full", max_epochs=3)
    assert full.images_seen == 12 * 8
    ramps = _ramps()
    for i, (lr, betas, gamma, decay, p) in enumerate(full_rows.rows):
        seen = 8 * i  # images before batch i
        assert lr == ramps["lr"](seen) and betas[1] == ramps["beta2"](seen) and gamma == ramps["gamma"](seen)
        assert decay == ema_decay_from_half_life(ramps["ema_half_life"](seen), 8)
        assert p == pytest.approx(ramps["augment_p"](seen), abs=1e-7)  # stored in a float32 buffer
    assert full_rows.rows[-1][0] == 5e-5  # held at the end value

    _fit(tmp_path / "split", max_epochs=2)
    resumed, resumed_rows, resumed_model = _fit(tmp_path / "split", max_epochs=3, ckpt_path="last")
    assert resumed.images_seen == full.images_seen
    assert resumed_rows.rows == full_rows.rows[-4:]  # the third epoch's values, identical
    for name, value in full_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[name]), name


def test_state_round_trip():
    schedule = R3GANSchedule(lr=CosineRamp(1e-3, 1e-4, 100))
    schedule.images_seen = 37
    clone = R3GANSchedule(lr=CosineRamp(1e-3, 1e-4, 100))
    clone.load_state_dict(schedule.state_dict())
    assert clone.images_seen == 37 and clone.values() == schedule.values()
