"""The training core's contracts that a user scales on: no host syncs, schedulers, optimizers, prediction."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from _core_helpers import image_loader, trainer
from lightning_gen import VAE, GANModule
from lightning_gen.losses import r1_penalty, r1_penalty_from_logits
from lightning_gen.networks import DCGANDiscriminator

TINY = dict(image_size=16, latent_dim=8, width=8)

# The Tensor methods that make the host wait for the device (on a GPU each drains the queue).
SYNCING_METHODS = ("item", "__bool__", "__float__", "__int__", "tolist", "numpy")


class CountHostSyncs(L.Callback):
    """Counts calls of the syncing Tensor methods, by the training batch during which they happen.

    Syncs after ``on_train_epoch_end`` begins are attributed to ``"epoch_end"``.
    """

    def __init__(self):
        self.calls: dict[object, list[str]] = {}
        self.current: object = "setup"
        self.logging_batches: set[int] = set()
        self._originals = {}

    def on_train_start(self, trainer, pl_module):
        for name in SYNCING_METHODS:
            original = getattr(torch.Tensor, name)
            self._originals[name] = original

            def counting(tensor, *args, _name=name, _original=original, **kwargs):
                self.calls.setdefault(self.current, []).append(_name)
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, counting)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.current = batch_idx
        if pl_module._is_logging_step() or batch_idx + 1 == trainer.num_training_batches:  # the batches that log
            self.logging_batches.add(batch_idx)

    def on_train_epoch_end(self, trainer, pl_module):
        self.current = "epoch_end"

    def on_train_end(self, trainer, pl_module):
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)

    def steady_state_syncs(self, warmup: int = 2) -> dict[int, list[str]]:
        return {
            batch: calls
            for batch, calls in self.calls.items()
            if isinstance(batch, int) and batch >= warmup and batch not in self.logging_batches
        }


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: GANModule(**TINY, ema_decay=0.999),
        lambda: GANModule(**TINY, loss="wgan-gp", n_critic=2, ema_decay=0.999),
        lambda: GANModule(**TINY, loss="hinge", r1_weight=1.0),
        lambda: VAE(**TINY),
        lambda: VAE(**TINY, adversarial_weight=0.1),
    ],
    ids=["gan-ema", "wgan-gp-ncritic2-ema", "hinge-r1", "vae", "vae-gan"],
)
def test_no_host_syncs_outside_logging_steps(tmp_path, make_model):
    counter = CountHostSyncs()
    t = trainer(tmp_path, max_epochs=1, log_every_n_steps=4, callbacks=[counter])
    t.fit(make_model(), image_loader(n=80, batch_size=8))  # 10 batches; batches 3 and 7 are logging steps
    assert counter.logging_batches == {3, 7, 9}  # logging steps and the epoch's last batch
    assert counter.steady_state_syncs() == {}
    # The device flag of the non-finite guard is read on logging steps (and at the epoch end), so they may sync.
    assert counter.calls.get(3) and counter.calls.get("epoch_end")


def test_fp16_reads_only_the_grad_scaler_verdict(tmp_path):
    from lightning.pytorch.plugins import MixedPrecision

    counter = CountHostSyncs()
    t = trainer(tmp_path, max_epochs=1, log_every_n_steps=4, callbacks=[counter], plugins=[MixedPrecision("16-mixed", "cpu")])
    t.fit(GANModule(**TINY, ema_decay=0.999), image_loader(n=80, batch_size=8))
    # Named exception: under 16-mixed the module reads, once per half-step and right after the GradScaler's own
    # check (which already waited for the device, or runs inside a fused optimizer), whether it skipped the step,
    # so that generator_step and the EMA count only real updates. That is one __bool__ per optimizer step.
    for batch, calls in counter.steady_state_syncs().items():
        assert calls.count("__bool__") == 2 and set(calls) <= {"__bool__", "item"}, (batch, calls)


def test_default_adam_is_fused_where_torch_has_a_kernel():
    opt_g, opt_d = GANModule(**TINY).configure_optimizers()
    assert opt_g.defaults["fused"] is True and opt_d.defaults["fused"] is True  # torch has fused Adam on the CPU
    (opt_vae,) = VAE(**TINY).configure_optimizers()
    assert opt_vae.defaults["fused"] is True
    # A factory is used as given.
    opt_g, _ = GANModule(**TINY, g_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3)).configure_optimizers()
    assert not opt_g.defaults["fused"] and opt_g.defaults["lr"] == 1e-3


def _step_lr(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


def test_lr_schedulers_follow_generator_steps_and_resume_on_track(tmp_path):
    def fit(root, max_epochs, ckpt_path=None):
        L.seed_everything(0)
        model = GANModule(**TINY, g_lr_scheduler=_step_lr, d_lr_scheduler=_step_lr, lr_scheduler_interval="step")
        t = trainer(root, max_epochs=max_epochs, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=root / "ckpt", save_last=True)])
        t.fit(model, image_loader(n=24, batch_size=8), ckpt_path=ckpt_path)  # 3 generator steps per epoch
        return model, t

    model, t = fit(tmp_path / "full", max_epochs=2)
    assert model.generator_step == 6
    for optimizer in t.optimizers:  # halved every 2 generator steps: 2e-4 * 0.5**3
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.5**3)
    fit(tmp_path / "split", max_epochs=1)
    resumed, resumed_t = fit(tmp_path / "split", max_epochs=2, ckpt_path="last")
    assert [o.param_groups[0]["lr"] for o in resumed_t.optimizers] == [o.param_groups[0]["lr"] for o in t.optimizers]
    assert resumed_t.lr_scheduler_configs[0].scheduler.last_epoch == t.lr_scheduler_configs[0].scheduler.last_epoch == 6


def test_lr_schedulers_returned_by_configure_optimizers_are_stepped_per_epoch(tmp_path):
    class WithSchedulers(GANModule):
        def configure_optimizers(self):
            opt_g, opt_d = super().configure_optimizers()
            return [opt_g, opt_d], [_step_lr(opt_g), {"scheduler": _step_lr(opt_d), "interval": "epoch"}]

    model = WithSchedulers(**TINY)
    t = trainer(tmp_path, max_epochs=4)
    t.fit(model, image_loader(n=16, batch_size=8))
    assert [o.param_groups[0]["lr"] for o in t.optimizers] == pytest.approx([2e-4 * 0.25] * 2)  # 4 epochs, halved every 2


def test_vae_optimizer_and_scheduler_factories(tmp_path):
    model = VAE(
        **TINY,
        adversarial_weight=0.1,
        optimizer=lambda p: torch.optim.SGD(p, lr=1e-4),
        lr_scheduler=_step_lr,
        betas_d=(0.0, 0.99),
    )
    t = trainer(tmp_path, max_epochs=2)
    t.fit(model, image_loader(n=16, batch_size=8))
    opt_vae, opt_d = t.optimizers
    assert isinstance(opt_vae, torch.optim.SGD) and opt_vae.param_groups[0]["lr"] == pytest.approx(5e-5)
    assert opt_d.defaults["betas"] == (0.0, 0.99)


def test_spectral_norm_keeps_the_dcgan_initialisation():
    torch.manual_seed(0)
    d = DCGANDiscriminator(image_size=32, channels=3, width=32, num_classes=4, spectral_norm=True)
    stored = {name: t for name, t in d.state_dict().items() if name.endswith("weight.original")}
    assert len(stored) == 5  # 4 convolutions and the projection embedding
    for name, weight in stored.items():
        assert 0.015 < weight.std().item() < 0.025, name  # N(0, 0.02), not PyTorch's default init


def test_r1_reuses_the_real_forward_and_matches_the_separate_penalty(tmp_path):
    torch.manual_seed(0)
    d = DCGANDiscriminator(image_size=16, channels=3, width=8, norm="layer")
    x = torch.randn(4, 3, 16, 16)
    x_grad = x.clone().requires_grad_(True)
    assert torch.allclose(r1_penalty_from_logits(d(x_grad), x_grad), r1_penalty(d, x))

    calls = []
    model = GANModule(**TINY, loss="hinge", r1_weight=1.0)
    model.discriminator.register_forward_hook(lambda *args: calls.append(1))
    trainer(tmp_path, max_steps=2).fit(model, image_loader(n=8))  # one D step, one G step
    assert len(calls) == 3  # D step: real + fake (R1 from the real forward); G step: fake


def test_float_images_in_0_1_raise_naming_the_fix(tmp_path):
    images = torch.rand(16, 3, 16, 16)  # torchvision ToTensor() range
    loader = DataLoader(images, batch_size=8)
    with pytest.raises(ValueError, match=r"expects float images in \[-1, 1\].*Normalize\(mean=0.5, std=0.5\)"):
        trainer(tmp_path, max_steps=2).fit(GANModule(**TINY), loader)
    with pytest.raises(ValueError, match=r"expects float images in \[-1, 1\]"):
        trainer(tmp_path, max_steps=2).fit(VAE(**TINY), loader)


def test_gradient_accumulation_is_refused_before_the_first_step(tmp_path):
    model = GANModule(**TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"accumulate_grad_batches=2\) can't apply. Use a larger batch_size"):
        trainer(tmp_path, max_steps=2, accumulate_grad_batches=2).fit(model, image_loader(n=8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("make_model", [lambda: GANModule(**TINY, ema_decay=0.9, num_classes=3), lambda: VAE(**TINY)], ids=["gan", "vae"])
def test_predict_step_and_sample_agree(tmp_path, make_model):
    from lightning_gen.predict import ImageWriter, SeedDataModule

    model = make_model()
    t = trainer(tmp_path, callbacks=[ImageWriter(tmp_path / "out")])
    batches = t.predict(model, datamodule=SeedDataModule(n=5, start=10, batch_size=2))
    images = torch.cat(batches)
    labels = torch.arange(10, 15) % model.num_classes if model.num_classes else None
    expected = torch.cat([model.sample(1, seed=s, labels=None if labels is None else labels[i : i + 1]) for i, s in enumerate(range(10, 15))])
    assert torch.allclose(images, expected, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{s:06d}.png" for s in range(10, 15)]
    # Latents work too, and forward() samples with the same network as sample().
    z = torch.randn(3, model.latent_dim)
    batch = (z, torch.arange(3)) if model.num_classes else z
    model.eval()
    from_latents = model.predict_step(batch, 0)
    if model.num_classes:
        assert torch.allclose(from_latents, model(z, torch.arange(3)).clamp(-1, 1))


def test_sample_streams_in_chunks_gathered_on_the_cpu():
    model = GANModule(**TINY)
    chunks = list(model.iter_samples(10, seed=0, batch_size=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    full = model.sample(10, seed=0, batch_size=4)
    assert full.device.type == "cpu" and torch.equal(torch.cat(chunks).cpu(), full)
    assert torch.equal(full, model.sample(10, seed=0, batch_size=10))


def test_channels_last_networks_and_batches(tmp_path):
    seen = []

    class Spy(GANModule):
        def _discriminator_update(self, opt_d, real, labels):
            seen.append(real.is_contiguous(memory_format=torch.channels_last))
            return super()._discriminator_update(opt_d, real, labels)

    model = Spy(**TINY, channels_last=True, ema_decay=0.9)
    trainer(tmp_path, max_steps=2).fit(model, image_loader(n=8))
    assert seen == [True]
    conv = model.discriminator.features[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_compiled_training_keeps_checkpoints_and_hub_folders_plain(tmp_path):
    # aot_eager goes through dynamo and AOTAutograd like inductor, without compiling C++ on a 2-core CI machine.
    model = GANModule(**TINY, ema_decay=0.9, compile={"backend": "aot_eager"})
    t = trainer(tmp_path, max_steps=4, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)])
    t.fit(model, image_loader(n=16))
    assert model.generator._compiled_call_impl is not None  # really compiled
    keys = set(model.state_dict())
    assert keys == set(GANModule(**TINY, ema_decay=0.9).state_dict()) and not any("_orig_mod" in k for k in keys)
    loaded = GANModule.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert torch.equal(loaded.sample(4, seed=0), model.sample(4, seed=0))
    model.save_pretrained(tmp_path / "hub")
    assert torch.equal(GANModule.from_pretrained(tmp_path / "hub").sample(4, seed=0), model.sample(4, seed=0))
    # A network compiled by hand with torch.compile() is unwrapped, so its keys stay plain too.
    g = torch.compile(GANModule(**TINY).generator, backend="eager")
    assert not any("_orig_mod" in k for k in GANModule(**TINY, generator=g).state_dict())


def confident_discriminator() -> torch.nn.Module:
    """A discriminator that calls everything real (logit ~10) for a while: ADA's signal is then 1, so p rises."""
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 1))
    torch.nn.init.zeros_(d[1].weight)
    torch.nn.init.constant_(d[1].bias, 10.0)
    return d


def test_augmentation_reaches_both_half_steps_and_logs_p(tmp_path):
    seen = []
    model = GANModule(**TINY, augment="ada", ada_speed_images=100, ada_interval=1, discriminator=confident_discriminator())
    model.discriminator.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    real = []
    loader = image_loader(n=32)

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            real.append(batch[0].clone())

    t = trainer(tmp_path, max_epochs=2, log_every_n_steps=1, callbacks=[Spy()])
    t.fit(model, loader)
    p = t.callback_metrics["train/augment_p"].item()
    assert 0.0 < p <= 1.0 and p == model.augment.p.item()  # ADA moved p, and the log shows it
    lecam = trainer(tmp_path, max_epochs=1, log_every_n_steps=1)
    lecam.fit(GANModule(**TINY, augment="diffaugment", lecam_weight=0.1), image_loader(n=16))
    assert lecam.callback_metrics["train/lecam"].item() >= 0
    # Once p > 0, what D sees on the real side is not the batch itself.
    assert not torch.equal(seen[-3], real[-1])
    with pytest.raises(ValueError, match="adversarial_weight > 0"):
        VAE(**TINY, augment="diffaugment")
    vae = VAE(**TINY, adversarial_weight=0.1, augment="ada", ada_speed_images=100, ada_interval=1)
    vae.discriminator.head.bias.data.fill_(10.0)  # calls everything real at first: p must rise
    trainer(tmp_path, max_epochs=1).fit(vae, image_loader(n=16))
    assert vae.augment.p.item() > 0


def test_eval_mode_restores_each_submodules_own_mode_also_on_an_exception(tmp_path):
    from lightning_gen._base import eval_mode

    model = GANModule(**TINY, ema_decay=0.9)
    next(m for m in model.generator_ema.module.modules() if isinstance(m, torch.nn.BatchNorm2d)).eval()  # e.g. frozen statistics inside a network that trains
    modes = {name: m.training for name, m in model.named_modules()}
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model.generator_ema.module):
            assert not any(m.training for m in model.generator_ema.module.modules())
            raise RuntimeError("boom")
    assert {name: m.training for name, m in model.named_modules()} == modes

    # The sample grids of both modules go through it: a network that fails mid-grid leaves every mode as it was.
    def fail(*args):
        raise OSError("out of memory")

    vae = VAE(**TINY)
    next(m for m in vae.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)).eval()
    for module, network in ((model, model.generator_ema.module), (vae, vae.decoder)):
        modes = {name: m.training for name, m in module.named_modules()}
        handle = network.register_forward_hook(fail)
        with pytest.raises(OSError, match="out of memory"):
            module.log_sample_grids()
        handle.remove()
        assert {name: m.training for name, m in module.named_modules()} == modes, type(module).__name__
