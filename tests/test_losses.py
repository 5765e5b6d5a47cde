import math

import pytest
import torch

from lightning_gen.losses import discriminator_loss, generator_loss, gradient_penalty, r1_penalty


def test_bce_losses_match_their_definitions():
    real, fake = torch.tensor([0.3, -1.2]), torch.tensor([0.5, 2.0])
    sig = torch.sigmoid
    expected_d = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert discriminator_loss("bce", real, fake).item() == pytest.approx(expected_d.item(), rel=1e-6)
    assert generator_loss("bce", fake).item() == pytest.approx(-torch.log(sig(fake)).mean().item(), rel=1e-6)


def test_hinge_and_wasserstein_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert generator_loss("hinge", fake).item() == pytest.approx(1.5)
    assert discriminator_loss("wgan-gp", real, fake).item() == pytest.approx(-1.5 - 1.25)
    assert generator_loss("wgan-gp", fake).item() == pytest.approx(1.5)


def test_unknown_loss_lists_choices():
    with pytest.raises(ValueError, match=r"loss must be one of \('bce', 'hinge', 'wgan-gp'\), got 'lsgan'"):
        discriminator_loss("lsgan", torch.zeros(1), torch.zeros(1))


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = <w, x> has input gradient w everywhere, so the penalty is (||w|| - 1)^2.
    w = torch.full((1, 2, 2, 2), 0.5)  # ||w|| = sqrt(8) * 0.5
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(4, 1, 2, 2, 2).squeeze(1), torch.randn(4, 2, 2, 2)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((math.sqrt(8) * 0.5 - 1) ** 2, rel=1e-5)
    assert r1_penalty(critic, real).item() == pytest.approx(8 * 0.25, rel=1e-5)


def test_penalties_run_in_float32_under_autocast():
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    real, fake = torch.randn(3, 3, 2, 2), torch.randn(3, 3, 2, 2)
    seen = []
    critic.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic(real).dtype == torch.bfloat16  # autocast is really on...
        gp, r1 = gradient_penalty(lambda x: critic(x).flatten(), real, fake), r1_penalty(lambda x: critic(x).flatten(), real)
    assert seen[1:] == [torch.float32, torch.float32]  # ...but the penalties' forwards ran in fp32
    assert gp.dtype == r1.dtype == torch.float32
    gp.backward()  # double backward reaches the critic's weights
    assert critic[1].weight.grad is not None
