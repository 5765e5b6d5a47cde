"""DiffAugment, ADA and LeCam (lightning_gen.augment): gradients, identity at p = 0, same ops for reals and fakes,
ADA's p following the overfitting signal, exact state round trips, and LeCam against a hand computation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_gen.augment import AdaptiveAugment, DiffAugment, LeCamRegularizer, build_augment, sum_across_processes
from lightning_gen.data.shapes import ShapesDataset

# One augmentation per op / group, so a broken op cannot hide behind the others.
SINGLE_OPS = [
    pytest.param(lambda: DiffAugment("color"), id="diffaugment-color"),
    pytest.param(lambda: DiffAugment("translation"), id="diffaugment-translation"),
    pytest.param(lambda: DiffAugment("cutout"), id="diffaugment-cutout"),
    pytest.param(lambda: AdaptiveAugment("b", initial_p=1.0), id="ada-blit"),
    pytest.param(lambda: AdaptiveAugment("g", initial_p=1.0), id="ada-geometric"),
    pytest.param(lambda: AdaptiveAugment("c", initial_p=1.0), id="ada-color"),
    pytest.param(lambda: AdaptiveAugment("o", initial_p=1.0), id="ada-cutout"),
]


def shapes_batch(n: int = 8, size: int = 16, channels: int = 3) -> torch.Tensor:
    """Real images from the library's shapes data, in [-1, 1]."""
    dataset = ShapesDataset(num_images=n, image_size=size, channels=channels, seed=3)
    return torch.stack([dataset[i][0] for i in range(n)]).float() / 127.5 - 1.0


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyGenerator(nn.Module):
    def __init__(self, latent_dim: int = 8, size: int = 16):
        super().__init__()
        self.size = size
        self.net = nn.Sequential(nn.Linear(latent_dim, 3 * size * size), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 3, self.size, self.size)


def tiny_discriminator(channels: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(8 * 4 * 4, 1))


# ------------------------------------------------------------------------------------------------------------
# Differentiability
@pytest.mark.parametrize("make_augment", SINGLE_OPS)
def test_generator_gradients_flow_through_each_augmentation(make_augment):
    torch.manual_seed(0)
    generator, discriminator, augment = TinyGenerator(), tiny_discriminator(), make_augment()
    fake = generator(torch.randn(8, 8))
    discriminator(augment(fake, seeded())).mean().backward()
    grads = torch.cat([p.grad.flatten() for p in generator.parameters()])
    assert torch.isfinite(grads).all()
    assert grads.abs().sum() > 0


@pytest.mark.parametrize("make_augment", SINGLE_OPS)
def test_augmentation_gradients_match_finite_differences(make_augment):
    augment = make_augment().double()
    images = (shapes_batch(2, 8) + 0.01 * torch.randn(2, 3, 8, 8, generator=seeded(1))).double().requires_grad_(True)
    # A fresh generator with the same seed per call makes the function deterministic, as gradcheck needs.
    assert torch.autograd.gradcheck(lambda x: augment(x, seeded(5)), (images,), eps=1e-6, atol=1e-5, fast_mode=True)


# ------------------------------------------------------------------------------------------------------------
# Identity at p = 0, dtype
@pytest.mark.parametrize(
    "augment",
    [DiffAugment(p=0.0), DiffAugment(""), AdaptiveAugment("bgco", initial_p=0.0)],
    ids=["diffaugment-p0", "diffaugment-empty-policy", "ada-p0"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_zero_probability_returns_the_images_unchanged(augment, dtype):
    images = shapes_batch().to(dtype)
    out = augment(images, seeded())
    assert out.dtype == dtype
    assert torch.equal(out, images)


@pytest.mark.parametrize("make_augment", SINGLE_OPS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_augmentation_returns_the_batch_dtype_and_changes_images(make_augment, dtype):
    images = shapes_batch().to(dtype)
    out = make_augment()(images, seeded())
    assert out.dtype == dtype and out.shape == images.shape
    assert torch.isfinite(out.float()).all()
    assert not torch.equal(out, images)
    # In low precision the result is the float32 result, rounded.
    reference = make_augment()(images.float(), seeded())
    assert (out.float() - reference).abs().mean() < 0.05


def test_adaptive_augment_with_p_one_changes_every_image():
    images = shapes_batch(16)
    out = AdaptiveAugment("bgc", initial_p=1.0)(images, seeded())
    assert ((out - images).flatten(1).abs().amax(dim=1) > 1e-3).all()


def test_same_generator_state_gives_the_same_augmentation():
    images = shapes_batch()
    for augment in (DiffAugment(), AdaptiveAugment("bgco", initial_p=0.7)):
        assert torch.equal(augment(images, seeded(11)), augment(images, seeded(11)))
        assert not torch.equal(augment(images, seeded(11)), augment(images, seeded(12)))


# ------------------------------------------------------------------------------------------------------------
# Reals and fakes get the same operations
@pytest.mark.parametrize(
    "augment", [DiffAugment("translation,cutout"), AdaptiveAugment("bgo", initial_p=0.7)], ids=["diffaugment", "ada"]
)
def test_geometric_ops_depend_on_the_generator_state_only_not_on_the_images(augment):
    # The geometric ops are linear in the pixels, so if a real and a fake batch drawn from the same generator
    # state got the same ops, augmenting a blend equals blending the augmented batches.
    real = shapes_batch(8)
    fake = TinyGenerator()(torch.randn(8, 8, generator=seeded(2))).detach()
    blended = augment(0.3 * real + 0.7 * fake, seeded(4))
    assert torch.allclose(blended, 0.3 * augment(real, seeded(4)) + 0.7 * augment(fake, seeded(4)), atol=1e-5)


def _change_statistics(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per image: changed or not, mean shift, fraction of pixels set to exactly zero, contrast ratio."""
    changed = (after - before).flatten(1).abs().amax(dim=1) > 1e-6
    mean_shift = (after - before).flatten(1).mean(dim=1)
    zeroed = ((after == 0) & (before != 0)).flatten(1).float().mean(dim=1)
    contrast = after.flatten(1).std(dim=1) / before.flatten(1).std(dim=1)
    return torch.stack([changed.float(), mean_shift, zeroed, contrast], dim=1)


@pytest.mark.parametrize("augment", [DiffAugment(p=0.5), AdaptiveAugment("bgco", initial_p=0.1)], ids=["diffaugment", "ada"])
def test_reals_and_fakes_see_the_same_distribution_of_operations(augment):
    # As in a training step: one RNG, reals then fakes, many steps. The two streams carry the same images, so
    # their statistics of change can differ only if the operations' distribution does.
    rng = seeded(0)
    images = shapes_batch(16)
    real_stats, fake_stats = [], []
    for _ in range(60):
        real_stats.append(_change_statistics(images, augment(images, rng)))
        fake_stats.append(_change_statistics(images, augment(images, rng)))
    real_stats, fake_stats = torch.cat(real_stats), torch.cat(fake_stats)
    standard_error = torch.sqrt((real_stats.var(dim=0) + fake_stats.var(dim=0)) / real_stats.shape[0])
    assert ((real_stats.mean(dim=0) - fake_stats.mean(dim=0)).abs() < 4 * standard_error + 1e-6).all()
    # And the operations did happen, at roughly the configured rate (not every image is changed at p < 1).
    changed = real_stats[:, 0].mean()
    assert 0.3 < changed < 0.99


# ------------------------------------------------------------------------------------------------------------
# ADA's p follows the overfitting signal
def logits_with_signal(signal: float, n: int = 100) -> torch.Tensor:
    """Logits whose mean sign is exactly ``signal``."""
    positives = round(n * (1 + signal) / 2)
    return torch.cat([torch.full((positives,), 2.0), torch.full((n - positives,), -2.0)])


def test_p_rises_when_the_discriminator_overfits_and_falls_when_it_does_not():
    ada = AdaptiveAugment(target=0.6, speed_images=1000, interval=4)
    for _ in range(3):
        ada.update(logits_with_signal(0.9))
    assert float(ada.p) == 0.0  # nothing moves between adjustments
    ada.update(logits_with_signal(0.9))
    assert float(ada.p) == pytest.approx(400 / 1000)  # up by the window's 4 x 100 images / speed
    assert float(ada.signal) == pytest.approx(0.9)
    for _ in range(4):
        ada.update(logits_with_signal(0.1))
    assert float(ada.p) == pytest.approx(0.0, abs=1e-7)
    for _ in range(4 * 5):
        ada.update(logits_with_signal(0.9))
    assert float(ada.p) == 1.0  # clamped to a probability


@pytest.mark.parametrize("overfits", [True, False])
def test_p_follows_a_discriminator_training_on_a_tiny_dataset(overfits):
    # Eight shapes images as the whole training set. Against noise, D separates them within a few steps and
    # r_t = E[sign(D(real))] goes to 1 (p rises); against the same images as "fakes" it cannot and r_t stays
    # near 0 (p falls). The reals go through the augmentation, as in training.
    torch.manual_seed(0)
    real = shapes_batch(8)
    discriminator = tiny_discriminator()
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-3)
    ada = AdaptiveAugment("bgc", speed_images=400, interval=4, initial_p=0.5)
    rng = seeded(0)
    for _ in range(40):
        fake = torch.randn(8, 3, 16, 16, generator=rng).clamp(-1, 1) if overfits else real
        real_logits = discriminator(ada(real, rng)).flatten()
        fake_logits = discriminator(ada(fake, rng)).flatten()
        loss = nn.functional.softplus(-real_logits).mean() + nn.functional.softplus(fake_logits).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ada.update(real_logits)
    if overfits:
        assert float(ada.p) > 0.7 and float(ada.signal) > 0.6
    else:
        assert float(ada.p) < 0.3 and float(ada.signal) < 0.6


def test_ranks_that_sum_their_signal_agree_on_p():
    # Two ranks see different logits: alone, rank 0 (r_t = 0.9) would raise p and rank 1 (r_t = 0.4) lower it.
    # With a reduce that returns the sum of every rank's totals (what all_reduce(SUM) gives each rank) they move
    # p identically, and exactly as one process seeing both batches would (pooled r_t = 0.7).
    rank_logits = [logits_with_signal(0.9, 60), logits_with_signal(0.4, 40)]
    ranks = [AdaptiveAugment(speed_images=2000, interval=2, initial_p=0.5) for _ in range(2)]
    alone = [AdaptiveAugment(speed_images=2000, interval=2, initial_p=0.5) for _ in range(2)]
    single = AdaptiveAugment(speed_images=2000, interval=2, initial_p=0.5)
    reduce_calls = []

    def all_reduce_sum(totals: torch.Tensor) -> torch.Tensor:
        reduce_calls.append(totals.clone())
        return window_totals[0] + window_totals[1]

    for _ in range(4):
        # Each rank's totals at the moment it calls reduce: its window so far plus this step's logits.
        window_totals = [torch.stack([r.sign_sum + l.sign().sum(), r.image_count + l.numel()]) for r, l in zip(ranks, rank_logits)]
        for rank, other, logits in zip(ranks, alone, rank_logits):
            rank.update(logits, reduce=all_reduce_sum)
            other.update(logits)
        single.update(torch.cat(rank_logits))
    assert len(reduce_calls) == 4  # once per rank per interval, not every step
    assert torch.equal(reduce_calls[0], torch.tensor([2 * 54.0, 2 * 60.0]))  # rank 0's own window: 2 steps of 60
    assert torch.equal(ranks[0].p, ranks[1].p)
    assert float(single.p) == pytest.approx(0.5 + 2 * 200 / 2000)  # pooled r_t = 0.7 > 0.6: up twice
    assert float(ranks[0].p) == pytest.approx(float(single.p))
    assert float(alone[0].p) > 0.5 > float(alone[1].p)  # without the reduce the ranks would disagree


def _ddp_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        logits = logits_with_signal(0.9, 60) if rank == 0 else logits_with_signal(0.4, 40)
        ada = AdaptiveAugment(speed_images=2000, interval=2, initial_p=0.5)
        lecam = LeCamRegularizer()
        for _ in range(4):
            ada.update(logits, reduce=sum_across_processes)
            lecam.update(logits, -logits, reduce=sum_across_processes)
        result = {"p": float(ada.p), "ema_real": float(lecam.ema_real), "ema_fake": float(lecam.ema_fake)}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


def test_sum_across_processes_makes_ddp_ranks_agree(tmp_path):
    torch.multiprocessing.spawn(_ddp_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    assert ranks[0]["p"] == pytest.approx(0.5 + 2 * 200 / 2000)  # pooled r_t = 0.7 > 0.6: up twice
    pooled_mean = float(torch.cat([logits_with_signal(0.9, 60), logits_with_signal(0.4, 40)]).mean())
    assert ranks[0]["ema_real"] == pytest.approx(pooled_mean) and ranks[0]["ema_fake"] == pytest.approx(-pooled_mean)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-device synchronisations exist on CUDA only")
def test_training_calls_never_synchronise_with_the_host_on_cuda():
    device = torch.device("cuda")
    augments = [AdaptiveAugment("bgco", speed_images=1000, interval=2, initial_p=0.5).to(device), DiffAugment().to(device)]
    lecam = LeCamRegularizer().to(device)
    rng = torch.Generator(device=device).manual_seed(0)
    images = shapes_batch(8).to(device)
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            for _ in range(4):
                for augment in augments:
                    out = augment(images.bfloat16(), rng)
                    logits = out.float().mean(dim=(1, 2, 3))
                    augment.update(logits)
                    lecam.update(logits, -logits)
                    penalty = lecam(logits, -logits)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.dtype == torch.bfloat16 and penalty.dtype == torch.float32
    assert 0.0 <= float(augments[0].p) <= 1.0


# ------------------------------------------------------------------------------------------------------------
# Checkpointing: ADA's state and LeCam's anchors survive a state_dict round trip exactly
def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_ada_state_round_trip_resumes_exactly_mid_interval():
    # Saved after 6 updates with interval 4: p moved once and two updates of the next window are pending.
    # The resumed copy (inside a parent module, as in a LightningModule) must continue exactly like the original.
    logits = [torch.randn(32, generator=seeded(i)) + 1.5 for i in range(12)]
    original = nn.ModuleDict({"augment": AdaptiveAugment(speed_images=300, interval=4)})
    for step in range(6):
        original["augment"].update(logits[step])
    state = _round_trip(original.state_dict())
    assert set(state) == {"augment.p", "augment.signal", "augment.sign_sum", "augment.image_count", "augment.pending_updates"}
    resumed = nn.ModuleDict({"augment": AdaptiveAugment(speed_images=300, interval=4)})
    resumed.load_state_dict(state)
    assert torch.equal(resumed["augment"].p, original["augment"].p) and float(resumed["augment"].p) > 0
    for step in range(6, 12):
        original["augment"].update(logits[step])
        resumed["augment"].update(logits[step])
        assert torch.equal(resumed["augment"].p, original["augment"].p)
    images = shapes_batch(4)
    assert torch.equal(resumed["augment"](images, seeded(9)), original["augment"](images, seeded(9)))


def test_lecam_anchors_round_trip():
    lecam = LeCamRegularizer()
    for i in range(5):
        lecam.update(torch.randn(8, generator=seeded(i)) + 1, torch.randn(8, generator=seeded(50 + i)) - 1)
    resumed = LeCamRegularizer()
    resumed.load_state_dict(_round_trip(lecam.state_dict()))
    for name in ("ema_real", "ema_fake", "num_updates"):
        assert torch.equal(getattr(resumed, name), getattr(lecam, name))
    real, fake = torch.randn(8, generator=seeded(99)), torch.randn(8, generator=seeded(98))
    assert torch.equal(resumed(real, fake), lecam(real, fake))


# ------------------------------------------------------------------------------------------------------------
# LeCam against a hand computation
def test_lecam_anchors_and_loss_match_a_hand_computation():
    lecam = LeCamRegularizer(decay=0.9)
    lecam.update(torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0]))  # first update: the means themselves
    assert (float(lecam.ema_real), float(lecam.ema_fake)) == (2.0, -1.0)
    lecam.update(torch.tensor([4.0, 4.0]), torch.tensor([1.0, 1.0]))  # then 0.9 * anchor + 0.1 * mean
    ema_real, ema_fake = 0.9 * 2.0 + 0.1 * 4.0, 0.9 * -1.0 + 0.1 * 1.0  # 2.2, -0.8
    assert float(lecam.ema_real) == pytest.approx(ema_real) and float(lecam.ema_fake) == pytest.approx(ema_fake)
    real_logits = torch.tensor([1.0, -1.0, 0.5], requires_grad=True)
    fake_logits = torch.tensor([3.0, 0.0], requires_grad=True)
    loss = lecam(real_logits, fake_logits)
    # mean(relu(real - ema_fake)^2) + mean(relu(ema_real - fake)^2), term by term:
    real_terms = [max(1.0 - ema_fake, 0) ** 2, max(-1.0 - ema_fake, 0) ** 2, max(0.5 - ema_fake, 0) ** 2]
    fake_terms = [max(ema_real - 3.0, 0) ** 2, max(ema_real - 0.0, 0) ** 2]
    assert float(loss.detach()) == pytest.approx(sum(real_terms) / 3 + sum(fake_terms) / 2)
    loss.backward()
    assert real_logits.grad[1] == 0 and fake_logits.grad[0] == 0  # inside the anchors: no pull
    assert real_logits.grad[0] == pytest.approx(2 * (1.0 - ema_fake) / 3)


def test_lecam_anchors_average_over_ranks_with_a_reduce():
    # reduce sums [real sum, real count, fake sum, fake count] over ranks: the anchors follow all ranks' logits.
    lecam = LeCamRegularizer()
    other_rank = torch.tensor([12.0, 3.0, -9.0, 3.0])  # three logits of 4 on reals, of -3 on fakes
    lecam.update(torch.tensor([0.0]), torch.tensor([1.0]), reduce=lambda totals: totals + other_rank)
    assert (float(lecam.ema_real), float(lecam.ema_fake)) == (3.0, -2.0)


def test_non_finite_logits_do_not_poison_ada_or_lecam():
    ada = AdaptiveAugment(speed_images=100, interval=1)
    ada.update(torch.tensor([1.0, float("nan"), 2.0, float("inf")]))  # the two finite logits: r_t = 1
    assert float(ada.p) == pytest.approx(2 / 100)
    lecam = LeCamRegularizer()
    lecam.update(torch.tensor([2.0, float("nan")]), torch.tensor([-1.0]))
    lecam.update(torch.tensor([float("nan")]), torch.tensor([5.0]))  # no finite real logit: anchors kept
    assert (float(lecam.ema_real), float(lecam.ema_fake), int(lecam.num_updates)) == (2.0, -1.0, 1)


# ------------------------------------------------------------------------------------------------------------
# Construction and errors
def test_build_augment_reads_the_module_argument():
    assert build_augment(None) is None
    assert build_augment("diffaugment").ops == ("color", "translation", "cutout")
    assert build_augment("diffaugment:translation,cutout").ops == ("translation", "cutout")
    ada = build_augment("ada:bgco", ada_target=0.5, ada_speed_images=2000, ada_interval=2)
    assert (ada.pipeline, ada.target, ada.speed_images, ada.interval) == ("bgco", 0.5, 2000, 2)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: build_augment("adaptive"), "'adaptive'"),
        (lambda: DiffAugment("color,flip"), "flip"),
        (lambda: DiffAugment(p=1.5), "1.5"),
        (lambda: AdaptiveAugment("bgx"), "'x'"),
        (lambda: AdaptiveAugment(target=1.2), "1.2"),
        (lambda: AdaptiveAugment(interval=0), "interval"),
        (lambda: AdaptiveAugment(speed_images=0), "speed_images"),
        (lambda: LeCamRegularizer(decay=1.0), "decay"),
    ],
)
def test_bad_arguments_are_named_in_the_error(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()
