"""on_nonfinite under a real fp16 GradScaler and without one: what is skipped, counted, averaged and reported.

Under ``16-mixed`` the CPU runs real fp16 autocast with a ``torch.amp.GradScaler("cpu")`` when the precision
plugin is given explicitly (``Trainer(precision="16-mixed")`` on the CPU would run bf16 without a scaler).
Overflows are injected at known half-steps, so every count below is exact.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision

from _core_helpers import image_loader, snapshot, trainer
from lightning_gen import GANModule

TINY = dict(image_size=16, latent_dim=8, width=8)
INIT_SCALE = 2.0**8  # low enough that the tiny networks never overflow on their own in fp16


class InjectedLogits(torch.nn.Module):
    """A linear discriminator whose ``call``-th forward gets ``value`` added to its logits.

    Adding a constant does not change any gradient: the loss becomes inf while every gradient stays
    finite, the case a check of the gradients alone misses.
    """

    def __init__(self, injections: dict[int, float]):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 1))
        self.calls, self.injections = 0, injections

    def forward(self, x):
        self.calls += 1
        return self.net(x) + self.injections.get(self.calls, 0.0)


def overflow_gradients_on(module: torch.nn.Module, backward_calls: set[int]) -> None:
    """Make the ``k``-th backward through ``module``'s first parameter non-finite, for k in ``backward_calls``."""
    calls = {"n": 0}

    def hook(grad):
        calls["n"] += 1
        return grad * float("inf") if calls["n"] in backward_calls else grad

    next(module.parameters()).register_hook(hook)


class RecordAfterBatch(L.Callback):
    def __init__(self):
        self.generator, self.ema, self.discriminator = [], [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.generator.append(snapshot(pl_module.generator))
        self.ema.append({k: v.clone() for k, v in pl_module.generator_ema.module.state_dict().items()})
        self.discriminator.append(snapshot(pl_module.discriminator))


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def _fit(tmp_path, model, precision_plugin=None, batches=6):
    record = RecordAfterBatch()
    plugins = [precision_plugin] if precision_plugin is not None else []
    # log_every_n_steps past the run: the counters are read once, at the epoch end, so one warning covers the run.
    t = trainer(tmp_path, max_epochs=1, log_every_n_steps=100, callbacks=[record], plugins=plugins)
    with pytest.warns(UserWarning, match=r"Skipped \d+ update\(s\) between generator steps") as warnings:
        t.fit(model, image_loader(n=8 * batches, batch_size=8))
    messages = [str(w.message) for w in warnings if "Skipped" in str(w.message)]
    return t, record, messages


def test_fp16_skip_lets_the_grad_scaler_own_every_skip(tmp_path):
    # n_critic=1: batch b calls D three times: 3b+1 (real) and 3b+2 (fake) in the D step, 3b+3 in the G step.
    # Batch 1: the G loss is inf (finite gradients). Batch 4: the D loss is inf (finite gradients).
    # Batch 3: the G loss is finite but G's gradients overflow (the 4th generator backward).
    discriminator = InjectedLogits({3 * 1 + 3: -float("inf"), 3 * 4 + 2: float("inf")})
    model = GANModule(**TINY, ema_decay=0.9, on_nonfinite="skip", discriminator=discriminator)
    overflow_gradients_on(model.generator, {4})
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    t, record, messages = _fit(tmp_path, model, MixedPrecision("16-mixed", "cpu", scaler=scaler))

    assert t.precision_plugin.scaler is scaler
    assert scaler.get_scale() == INIT_SCALE / 2**3  # the scaler saw all three and backed off each time
    assert (model.generator_step, model.discriminator_step, model.skipped_steps) == (4, 5, 3)
    assert model.generator_ema.num_updates == int(model.generator_ema.n_averaged) == 4  # averaged real steps only
    for skipped_g in (1, 3):  # neither G nor its EMA moved on the skipped generator steps
        assert _same(record.generator[skipped_g - 1], record.generator[skipped_g])
        assert _same(record.ema[skipped_g - 1], record.ema[skipped_g])
    assert not _same(record.ema[1], record.ema[2])  # and both move on the next real step
    assert _same(record.discriminator[3], record.discriminator[4])
    assert messages == ["Skipped 3 update(s) between generator steps 0 and 4: 2 with a non-finite loss, "
                        f"1 with non-finite gradients (GradScaler overflow; loss scale now {INIT_SCALE / 8:g})."]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for optimizer in t.optimizers:  # no NaN ever reached Adam's moments
        assert all(torch.isfinite(v).all() for state in optimizer.state.values() for v in state.values())


def test_fp32_skip_reports_gradient_only_overflows(tmp_path):
    # Without a scaler the skip is decided and undone on the device; the host counters count attempts.
    model = GANModule(**TINY, ema_decay=0.9, on_nonfinite="skip", discriminator=InjectedLogits({3 * 1 + 3: -float("inf")}))
    overflow_gradients_on(model.generator, {4})
    t, record, messages = _fit(tmp_path, model)
    assert messages == ["Skipped 2 update(s) between generator steps 0 and 6: 1 with a non-finite loss, 1 with non-finite gradients."]
    assert model.skipped_steps == 2
    for skipped_g in (1, 3):  # the update was undone on the device
        assert _same(record.generator[skipped_g - 1], record.generator[skipped_g])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fp16_raise_stops_on_a_nonfinite_loss_but_not_on_the_scalers_overflows(tmp_path):
    model = GANModule(**TINY, discriminator=InjectedLogits({}))
    overflow_gradients_on(model.generator, {2})  # a routine fp16 overflow: the scaler's business, no error
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    trainer(tmp_path, max_epochs=1, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)]).fit(model, image_loader(n=32))
    assert (model.generator_step, model.skipped_steps, scaler.get_scale()) == (3, 1, INIT_SCALE / 2)

    model = GANModule(**TINY, discriminator=InjectedLogits({3 * 1 + 3: -float("inf")}))
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    t = trainer(tmp_path, max_epochs=1, log_every_n_steps=100, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    with pytest.raises(FloatingPointError, match=r"non-finite between generator steps 0 and 3"):
        t.fit(model, image_loader(n=32))
    assert model.generator_step == 3 and model.skipped_steps == 1  # the bad update never happened
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_one_grad_scaler_checks_each_optimizer_on_its_own_and_shares_its_scale(tmp_path):
    """What the README's "Mixed precision" paragraph says: Lightning unscales, checks, steps (or skips) and
    calls ``update()`` once per optimizer step, so each optimizer's skip depends only on its own gradients;
    the scale they are multiplied by is one number, halved by an overflow of either network."""
    model = GANModule(**TINY, discriminator=InjectedLogits({}))
    overflow_gradients_on(model.discriminator, {1})  # the first D step overflows; nothing else does
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    calls = []
    update = scaler.update
    scaler.update = lambda *args, **kwargs: (calls.append("update"), update(*args, **kwargs))[1]

    class RecordScale(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            which = "G" if optimizer.param_groups[0]["params"][0] is next(pl_module.generator.parameters()) else "D"
            calls.append((which, scaler.get_scale()))

    before_g = snapshot(model.generator)
    t = trainer(tmp_path, max_steps=4, callbacks=[RecordScale()], plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    t.fit(model, image_loader(n=16))
    half = INIT_SCALE / 2
    assert calls == [("D", INIT_SCALE), "update", ("G", half), "update", ("D", half), "update", ("G", half), "update"]
    # D's overflow skipped D's step only; G stepped with the halved scale in the same batch.
    assert (model.discriminator_step, model.generator_step, model.skipped_steps) == (1, 2, 1)
    assert any(not torch.equal(before_g[k], v) for k, v in snapshot(model.generator).items())
