import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import MixedPrecision

from _core_helpers import changed, image_loader, snapshot, trainer
from lightning_gen import GANModule

TINY = dict(image_size=16, latent_dim=8, width=8)


def test_default_module_builds_dcgan_networks():
    model = GANModule()
    assert type(model.generator).__name__ == "DCGANGenerator" and type(model.discriminator).__name__ == "DCGANDiscriminator"
    assert model.automatic_optimization is False
    opt_g, opt_d = model.configure_optimizers()
    assert isinstance(opt_g, torch.optim.Adam) and opt_g.defaults["lr"] == 2e-4 and opt_g.defaults["betas"] == (0.5, 0.999)
    assert {id(p) for p in opt_g.param_groups[0]["params"]} == {id(p) for p in model.generator.parameters()}
    assert {id(p) for p in opt_d.param_groups[0]["params"]} == {id(p) for p in model.discriminator.parameters()}
    assert model.sample(2, seed=1).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("module", ["gan", "vae"])
def test_adam_betas_written_with_an_integer_zero_are_accepted(module):
    # torch.optim.Adam raises "betas must be either both floats or both Tensors" for (0, 0.99).
    from lightning_gen import VAE

    model = GANModule(**TINY, betas_g=(0, 0.99), betas_d=[0, 0.99]) if module == "gan" else VAE(image_size=16, latent_dim=8, width=8, betas=(0, 0.99))
    for optimizer in model.configure_optimizers():
        optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
        assert optimizer.defaults["betas"] == (0.0, 0.99)


class RecordHalfSteps(L.Callback):
    """Snapshots both networks (and their gradients) before each optimizer step, and after the last batch."""

    def __init__(self):
        self.snapshots, self.grads = [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.snapshots.append((snapshot(pl_module.generator), snapshot(pl_module.discriminator)))
        grads = lambda net: [None if p.grad is None else p.grad.clone() for p in net.parameters()]  # noqa: E731
        self.grads.append((grads(pl_module.generator), grads(pl_module.discriminator)))

    def on_train_end(self, trainer, pl_module):
        self.snapshots.append((snapshot(pl_module.generator), snapshot(pl_module.discriminator)))


@pytest.mark.parametrize("loss", ["bce", "hinge", "wgan-gp"])
def test_each_half_step_changes_only_its_network(tmp_path, loss):
    model = GANModule(**TINY, loss=loss, n_critic=2, r1_weight=1.0 if loss == "hinge" else 0.0)
    recorder = RecordHalfSteps()
    # n_critic=2: batch 0 steps D, batch 1 steps D then G (3 optimizer steps).
    trainer(tmp_path, max_steps=3, callbacks=[recorder]).fit(model, image_loader(n=16))
    (g0, d0), (g1, d1), (g2, d2), (g3, d3) = recorder.snapshots  # before D, before D, before G, after G
    for (g_a, d_a), (g_b, d_b) in [((g0, d0), (g1, d1)), ((g1, d1), (g2, d2))]:
        assert all(torch.equal(g_a[k], g_b[k]) for k in g_a), "a discriminator step changed the generator"
        assert any(not torch.equal(d_a[k], d_b[k]) for k in d_a), "a discriminator step left D unchanged"
    assert any(not torch.equal(g2[k], g3[k]) for k in g2), "the generator step left G unchanged"
    assert all(torch.equal(d2[k], d3[k]) for k in d2), "the generator step changed the discriminator"
    # No gradient ever reaches the idle network: G has none during the first D steps, and during the G step
    # D's gradients are exactly what its last step left (nothing was accumulated into them).
    (g_grads_d1, d_grads_d1), (g_grads_d2, d_grads_d2), (g_grads_g, d_grads_g) = recorder.grads
    assert all(g is None for g in g_grads_d1 + g_grads_d2)
    assert all(d is not None for d in d_grads_d2) and all(g is not None for g in g_grads_g)
    assert all(torch.equal(a, b) for a, b in zip(d_grads_d2, d_grads_g))
    assert model.generator_step == 1 and model.discriminator_step == 2


def test_losses_are_finite_and_logged(tmp_path):
    model = GANModule(**TINY)
    t = trainer(tmp_path, max_epochs=2)
    t.fit(model, image_loader())
    metrics = t.callback_metrics
    for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/generator_step"):
        assert key in metrics and math.isfinite(metrics[key].item()), key


@pytest.mark.parametrize("n_critic", [1, 3])
def test_step_counters(tmp_path, n_critic):
    model = GANModule(**TINY, n_critic=n_critic)
    t = trainer(tmp_path, max_epochs=1)
    t.fit(model, image_loader(n=48, batch_size=8))  # 6 batches: one critic update each
    assert model.discriminator_step == 6
    assert model.generator_step == 6 // n_critic  # the generator steps on every n_critic-th batch
    assert t.global_step == 6 + 6 // n_critic  # Lightning counts every optimizer step
    # max_steps counts optimizer steps too: 6 of them with n_critic=1 are 3 generator updates.
    model = GANModule(**TINY, n_critic=1)
    trainer(tmp_path, max_steps=6).fit(model, image_loader(n=32, batch_size=8))
    assert model.generator_step == 3


def test_n_critic_updates_each_see_a_fresh_real_batch(tmp_path):
    seen = []

    class Spy(GANModule):
        def _discriminator_update(self, opt_d, real, labels):
            seen.append(real.clone())
            return super()._discriminator_update(opt_d, real, labels)

    trainer(tmp_path, max_steps=3).fit(Spy(**TINY, n_critic=2), image_loader(n=16))
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])  # two critic updates, two different batches


def test_sample_range_seed_and_ema(tmp_path):
    model = GANModule(**TINY, ema_decay=0.5)
    trainer(tmp_path, max_epochs=1).fit(model, image_loader())
    a, b, c = model.sample(5, seed=3), model.sample(5, seed=3), model.sample(5, seed=4)
    assert a.shape == (5, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training  # sample() restores train mode
    assert int(model.generator_ema.n_averaged) == model.generator_ema.num_updates == model.generator_step == 4
    assert changed(snapshot(model.generator), model.generator_ema.module)  # EMA lags the raw weights
    ema = model.generator_ema.module.eval()
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(model.sample(5, seed=3), ema(z).clamp(-1, 1))  # sampling uses the EMA generator
    assert torch.equal(model.sample(300, seed=0, batch_size=64), model.sample(300, seed=0, batch_size=300))


def test_class_conditioning(tmp_path):
    model = GANModule(**TINY, num_classes=3)
    trainer(tmp_path, max_epochs=1).fit(model, image_loader(num_classes=3))
    assert model.generator_step == 4
    labels = torch.tensor([0, 1, 2, 0])
    samples = model.sample(4, seed=0, labels=labels)
    assert not torch.equal(samples[0], samples[1])
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        model.sample(4, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class-conditional but the batch has no labels"):
        trainer(tmp_path, max_steps=2).fit(GANModule(**TINY, num_classes=3), image_loader())
    with pytest.raises(ValueError, match=r"labels range over \[0, [34]\] but num_classes=3"):
        trainer(tmp_path, max_steps=2).fit(GANModule(**TINY, num_classes=3), image_loader(num_classes=5, n=64))


def test_custom_networks(tmp_path):
    class TinyG(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3 * 16 * 16)

        def forward(self, z):
            return torch.tanh(self.fc(z)).view(-1, 3, 16, 16)

    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 1))  # (B, 1) logits are accepted
    g = TinyG()
    model = GANModule(image_size=16, latent_dim=4, generator=g, discriminator=d)
    before = snapshot(g)
    trainer(tmp_path, max_epochs=1).fit(model, image_loader())
    assert model.generator is g and changed(before, g)
    assert model.custom_networks and "generator" not in model.hparams and "custom_networks" not in model.hparams


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=48), r"image_size must be a power of two from 16 to 256.*got 48"),
        (dict(channels=0), r"channels must be an integer >= 1, got 0"),
        (dict(n_critic=0), r"n_critic must be an integer >= 1, got 0"),
        (dict(loss="wgan"), r"loss must be one of \('bce', 'hinge', 'wgan-gp'\), got 'wgan'"),
        (dict(d_norm="instance"), r"d_norm must be one of \('batch', 'layer', 'none'\)"),
        (dict(ema_decay=1.5), r"ema_decay must be in \(0, 1\)"),
        (dict(on_nonfinite="ignore"), r"on_nonfinite must be one of \('raise', 'skip'\)"),
        (dict(gradient_clip_val=0), r"gradient_clip_val must be > 0 or None"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GANModule(**{**TINY, **kwargs})


def test_wgan_gp_defaults_to_layer_norm_critic():
    assert GANModule(**TINY, loss="wgan-gp").hparams.d_norm == "layer"
    assert GANModule(**TINY, loss="bce").hparams.d_norm == "batch"
    assert GANModule(**TINY, loss="hinge", r1_weight=1.0).hparams.d_norm == "layer"  # R1 is per-sample too


@pytest.mark.parametrize("loader_kwargs, expected", [(dict(channels=1), r"\(B, 3, 16, 16\).*\(8, 1, 16, 16\)"), (dict(image_size=32), r"\(B, 3, 16, 16\).*\(8, 3, 32, 32\)")])
def test_mismatched_batch_names_both_shapes(tmp_path, loader_kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        trainer(tmp_path, max_steps=2).fit(GANModule(**TINY), image_loader(**loader_kwargs))


class NaNAfter(torch.nn.Module):
    """A discriminator that starts returning NaN after ``after`` calls."""

    def __init__(self, after):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 1))
        self.calls, self.after = 0, after

    def forward(self, x):
        self.calls += 1
        out = self.net(x)
        return out * float("nan") if self.calls > self.after else out


def test_nonfinite_loss_raises_naming_the_steps_and_no_nan_checkpoint(tmp_path):
    model = GANModule(**TINY, discriminator=NaNAfter(after=6))
    t = trainer(tmp_path, max_epochs=3, enable_checkpointing=True, logger=CSVLogger(tmp_path), log_every_n_steps=100)
    # The flag is read at the end of epoch 0 (no logging step came first), before any checkpoint is written.
    with pytest.raises(FloatingPointError, match=r"non-finite between generator steps 0 and 4.*on_nonfinite='skip'"):
        t.fit(model, image_loader())
    # The NaN appeared during epoch 0, so no checkpoint exists; and saving now is refused outright.
    assert not list(Path(tmp_path).rglob("*.ckpt"))
    model.discriminator.net[1].weight.data[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"Refusing to write a checkpoint: \S+ holds non-finite values"):
        t.save_checkpoint(tmp_path / "nan.ckpt")


def test_nonfinite_loss_can_skip_steps(tmp_path):
    model = GANModule(**TINY, discriminator=NaNAfter(after=6), on_nonfinite="skip")
    with pytest.warns(UserWarning, match=r"Skipped \d+ update\(s\) between generator steps 0 and \d+: \d+ with a non-finite loss"):
        trainer(tmp_path, max_epochs=1).fit(model, image_loader())
    assert model.skipped_steps > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(t).all() for state in model.trainer.optimizers[1].state.values() for t in state.values())


class RecordStepGradNorms(torch.optim.SGD):
    norms: list = []

    def step(self, closure=None):
        if closure is not None:  # Lightning runs on_before_optimizer_step (the clipping) inside the closure
            closure()
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        RecordStepGradNorms.norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
        return super().step()


@pytest.mark.parametrize("precision", ["32", "16-mixed"])
def test_gradient_clipping_happens_after_unscaling(tmp_path, precision):
    RecordStepGradNorms.norms = []
    factory = lambda params: RecordStepGradNorms(params, lr=1e-3)  # noqa: E731
    model = GANModule(**TINY, gradient_clip_val=1e-3, g_optimizer=factory, d_optimizer=factory)
    kwargs = dict(plugins=[MixedPrecision("16-mixed", "cpu")]) if precision == "16-mixed" else {}
    trainer(tmp_path, max_steps=4, **kwargs).fit(model, image_loader())
    # Clipped in true units: the optimizer sees norm == clip value, not clip / loss_scale.
    norms = RecordStepGradNorms.norms
    # fp16 may skip early steps while the initial loss scale backs off; most steps must still run.
    assert len(norms) >= (2 if precision == "16-mixed" else 4), norms
    assert all(n == pytest.approx(1e-3, rel=1e-2) for n in norms), norms


def test_bf16_mixed_trains(tmp_path):
    model = GANModule(**TINY, loss="wgan-gp", n_critic=1, ema_decay=0.9)
    before_g, before_d = snapshot(model.generator), snapshot(model.discriminator)
    t = trainer(tmp_path, max_epochs=1, precision="bf16-mixed")
    t.fit(model, image_loader())
    assert changed(before_g, model.generator) and changed(before_d, model.discriminator)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed precision keeps fp32 master weights
    assert math.isfinite(t.callback_metrics["train/d_loss"].item())


def test_fp16_grad_scaler_skips_only_the_overflowing_optimizer(tmp_path):
    model = GANModule(**TINY)
    # Every discriminator gradient overflows; the generator's backward never touches D's parameters.
    for p in model.discriminator.parameters():
        p.register_hook(lambda grad: grad * float("inf"))
    before_g, before_d = snapshot(model.generator), snapshot(model.discriminator)
    t = trainer(tmp_path, max_steps=2, plugins=[MixedPrecision("16-mixed", "cpu")])
    t.fit(model, image_loader(n=8))
    scaler = t.precision_plugin.scaler
    assert scaler is not None and scaler.get_scale() < 2.0**16  # the overflow was seen and the scale backed off
    assert not changed(before_d, model.discriminator)  # D's step was skipped...
    assert changed(before_g, model.generator)  # ...G's was not
    assert model.generator_step == 1


def test_fp16_skipped_generator_steps_are_not_counted(tmp_path):
    model = GANModule(**TINY, ema_decay=0.9)
    for p in model.generator.parameters():  # every generator step overflows and is skipped by the GradScaler
        p.register_hook(lambda grad: grad * float("inf"))
    before_g = snapshot(model.generator)
    t = trainer(tmp_path, max_steps=4, plugins=[MixedPrecision("16-mixed", "cpu")])
    t.fit(model, image_loader(n=16))
    assert not changed(before_g, model.generator)
    assert model.generator_step == 0 and model.generator_ema.num_updates == 0  # nothing counted that didn't happen
    # Every optimizer step is either counted or skipped (early D steps may overflow too while the scale backs off).
    assert model.discriminator_step + model.skipped_steps == t.global_step and model.skipped_steps >= 2


def test_sample_grid_png_without_image_logger(tmp_path):
    model = GANModule(**TINY, num_sample_images=9)
    t = trainer(tmp_path, max_epochs=2, logger=CSVLogger(tmp_path, name="run"))
    t.fit(model, image_loader(), image_loader(n=8))
    grids = sorted(Path(t.logger.log_dir, "samples").glob("samples_epoch*.png"))
    assert [p.name for p in grids] == ["samples_epoch000_step0000004.png", "samples_epoch001_step0000008.png"]
    from PIL import Image

    assert Image.open(grids[0]).size == (3 * 18 + 2, 3 * 18 + 2)  # 3x3 grid of 16px images, 2px padding
    assert "val/d_real" in t.callback_metrics


def test_sample_grid_uses_logger_image_api(tmp_path):
    from lightning.pytorch.loggers.logger import DummyLogger

    class ImageLogger(DummyLogger):
        def __init__(self):
            super().__init__()
            self.images = []

        def log_image(self, key, images, step=None):
            self.images.append((key, step, images[0].size))

    logger = ImageLogger()
    trainer(tmp_path, max_epochs=1, logger=logger).fit(GANModule(**TINY, num_sample_images=4), image_loader())
    assert logger.images == [("samples", 4, (2 * 18 + 2, 2 * 18 + 2))]
    assert not list(Path(tmp_path).rglob("*.png"))


def test_checkpoint_round_trip_rebuilds_module(tmp_path):
    model = GANModule(**TINY, loss="hinge", ema_decay=0.9, n_critic=2)
    t = trainer(tmp_path, max_epochs=1)
    t.fit(model, image_loader())
    t.save_checkpoint(tmp_path / "m.ckpt")
    loaded = GANModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert loaded.hparams == model.hparams
    assert loaded.generator_step == model.generator_step == 2
    assert torch.equal(loaded.sample(4, seed=0), model.sample(4, seed=0))


def test_uint8_batches_from_a_bare_loader_are_converted(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    seen = []

    class Spy(GANModule):
        def _discriminator_update(self, opt_d, real, labels):
            seen.append((real.dtype, real.min().item(), real.max().item()))
            return super()._discriminator_update(opt_d, real, labels)

    trainer(tmp_path, max_steps=2).fit(Spy(**TINY), DataLoader(TensorDataset(images), batch_size=8))
    dtype, low, high = seen[0]
    assert dtype == torch.float32 and -1 <= low < -0.9 and 0.9 < high <= 1


def test_ema_warms_up_then_settles_at_its_decay():
    from lightning_gen.ema import GeneratorEMA

    net = torch.nn.BatchNorm1d(3)
    for n, expected_decay in [(1, 2 / 11), (10, 11 / 20), (990, 0.991), (100_000, 0.999)]:
        ema = GeneratorEMA(net, 0.999)
        ema.num_updates = n
        with torch.no_grad():
            ema.module.weight.zero_(), net.weight.fill_(1.0)
        ema.update(net)
        assert ema.module.weight == pytest.approx(torch.full((3,), 1 - expected_decay), abs=1e-6), n
    ema = GeneratorEMA(net, 0.999)
    net.num_batches_tracked.fill_(9)
    ema.update(net)
    assert ema.module.num_batches_tracked.item() == 9  # integer buffers follow the model
    assert ema.num_updates == int(ema.n_averaged) == 1
    state = ema.state_dict()
    assert set(state) >= {"n_averaged", "module.weight"}  # AveragedModel's checkpoint layout
    fresh = GeneratorEMA(net, 0.999)
    fresh.load_state_dict(state)
    assert fresh.num_updates == 1
