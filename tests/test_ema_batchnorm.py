"""The EMA generator's BatchNorm statistics: averaged, copied from the live network, or recomputed for the averaged weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _core_helpers import image_loader, trainer
from lightning_gen import GANModule
from lightning_gen.ema import GeneratorEMA

TINY = dict(image_size=16, latent_dim=8, width=8)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.BatchNorm1d(4))


def _train_a_little(net: nn.Module, ema: GeneratorEMA, steps: int = 5) -> None:
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    for step in range(steps):
        x = torch.randn(16, 3, generator=torch.Generator().manual_seed(step)) * (step + 1)
        optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        optimizer.step()
        ema.update(net)


def test_average_and_copy_conventions():
    net = _net()
    average, copy = GeneratorEMA(net, 0.5, "average"), GeneratorEMA(net, 0.5, "copy")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    for step in range(3):
        before = average.module[1].running_mean.clone()
        optimizer.zero_grad()
        net(torch.randn(16, 3) * (step + 1)).pow(2).mean().backward()
        optimizer.step()
        decay = min(0.5, (1 + step) / (10 + step)) if step else 0.0  # the first update copies
        average.update(net), copy.update(net)
        assert torch.allclose(average.module[1].running_mean, decay * before + (1 - decay) * net[1].running_mean, atol=1e-6)
        for name, buffer in net.named_buffers():
            assert torch.equal(copy.module.get_buffer(name), buffer), name
    # The weights are averaged the same way under both.
    assert all(torch.equal(a, b) for a, b in zip(average.module.parameters(), copy.module.parameters()))
    assert not average.needs_statistics and not copy.needs_statistics


def test_recompute_gives_the_plain_mean_of_batch_statistics_of_the_averaged_weights():
    net = _net()
    ema = GeneratorEMA(net, 0.5, "recompute")
    initial = {name: b.clone() for name, b in ema.module.named_buffers()}
    _train_a_little(net, ema)
    assert ema.needs_statistics  # due before the next use...
    assert all(torch.equal(initial[name], b) for name, b in ema.module.named_buffers())  # ...and left alone until then
    ema.module[1].eval()  # a submodule's own mode must come back
    batches = [torch.randn(32, 3, generator=torch.Generator().manual_seed(100 + i)) for i in range(4)]
    ema.recompute_batchnorm_statistics((x,) for x in batches)
    assert not ema.needs_statistics
    assert [m.training for m in ema.module] == [True, False, True, True, True]
    # Reference: the averaged weights, each layer normalising by its batch statistics, stats averaged over batches.
    first, second = [], []
    for x in batches:
        h = ema.module[0](x)
        first.append((h.mean(0), h.var(0, unbiased=True)))
        h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + ema.module[1].eps) * ema.module[1].weight + ema.module[1].bias
        h = ema.module[3](ema.module[2](h))
        second.append((h.mean(0), h.var(0, unbiased=True)))
    for layer, stats in ((ema.module[1], first), (ema.module[4], second)):
        # The running mean is updated as r_k = (1 - 1/k) r_{k-1} + m_k / k: float32 rounding of 4 steps.
        assert torch.allclose(layer.running_mean, torch.stack([m for m, _ in stats]).mean(0), rtol=1e-5, atol=1e-6)
        assert torch.allclose(layer.running_var, torch.stack([v for _, v in stats]).mean(0), rtol=1e-5, atol=1e-6)
        assert int(layer.num_batches_tracked) == 4
        assert "forward" not in layer.__dict__  # the class's forward is back


def test_invalid_convention_is_named():
    with pytest.raises(ValueError, match=r"ema_batchnorm must be one of \('average', 'copy', 'recompute'\), got 'mean'"):
        GANModule(**TINY, ema_decay=0.9, ema_batchnorm="mean")


def test_recompute_runs_lazily_before_sampling_grids_and_exports_never_per_step(tmp_path):
    model = GANModule(**TINY, ema_decay=0.9, ema_batchnorm="recompute", num_classes=2)
    calls = []
    recompute = model.generator_ema.recompute_batchnorm_statistics
    model.generator_ema.recompute_batchnorm_statistics = lambda batches: (calls.append(model.generator_step), recompute(batches))[1]
    t = trainer(tmp_path, max_epochs=2)
    t.fit(model, image_loader(n=16, num_classes=2))  # 2 generator steps per epoch
    assert calls == [2, 4]  # once per epoch, for the epoch-end grid
    first = model.sample(6, seed=1)
    assert calls == [2, 4] and torch.equal(model.sample(6, seed=1), first)  # up to date: not recomputed again
    # The same averaged weights with the live generator's statistics sample other images: the convention matters.
    copied = GANModule(**TINY, ema_decay=0.9, ema_batchnorm="copy", num_classes=2)
    copied.load_state_dict(model.state_dict())
    for name, buffer in copied.generator_ema.module.named_buffers():
        buffer.copy_(copied.generator.get_buffer(name))
    assert not torch.allclose(copied.sample(6, seed=1), first, atol=1e-3)
    # A checkpoint and a Hub folder give the same images: their statistics are recomputed on load, identically.
    t.save_checkpoint(tmp_path / "m.ckpt")
    loaded = GANModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert loaded.generator_ema.needs_statistics and torch.equal(loaded.sample(6, seed=1), first)
    model.save_pretrained(tmp_path / "hub", samples=False)
    assert torch.equal(GANModule.from_pretrained(tmp_path / "hub").sample(6, seed=1), first)
    # Recomputing depends on the averaged weights only: it leaves the training RNG and the live networks alone.
    state = torch.random.get_rng_state()
    live = {k: v.clone() for k, v in model.generator.state_dict().items()}
    model.generator_ema.needs_statistics = True
    model.sample(6, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(live[k], v) for k, v in model.generator.state_dict().items())
