import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from lightning_gen.losses_relativistic import (
    gradient_penalty_from_logits,
    r1_r2_penalties,
    rpgan_discriminator_loss,
    rpgan_generator_loss,
    zero_centred_gradient_penalty,
)
from lightning_gen.networks.r3gan import R3GANDiscriminator


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_rpgan_losses_match_a_hand_computation():
    real = torch.tensor([1.5, -0.5, 3.0, 0.0])
    fake = torch.tensor([0.5, 0.5, -1.0, 0.0])
    # D: softplus(-(r - f)), G: softplus(-(f - r)), each averaged over the pairs; in float64 by hand.
    expected_d = sum(_softplus(-(r - f)) for r, f in zip(real.tolist(), fake.tolist())) / 4
    expected_g = sum(_softplus(-(f - r)) for r, f in zip(real.tolist(), fake.tolist())) / 4
    # float32 softplus and mean of 4 values: a few ulps of relative error.
    assert rpgan_discriminator_loss(real, fake).item() == pytest.approx(expected_d, rel=1e-6)
    assert rpgan_generator_loss(real, fake).item() == pytest.approx(expected_g, rel=1e-6)
    # Relativistic: adding the same constant to both logits changes nothing (exactly, in float64).
    shift = torch.tensor(7.25, dtype=torch.float64)
    real64, fake64 = real.double(), fake.double()
    assert rpgan_discriminator_loss(real64 + shift, fake64 + shift) == rpgan_discriminator_loss(real64, fake64)


def test_rpgan_gradients_with_respect_to_the_logits():
    real = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    fake = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64, requires_grad=True)
    rpgan_discriminator_loss(real, fake).backward()
    # d/dr softplus(f - r) = -sigmoid(f - r); divided by the batch of 3.
    expected = -torch.sigmoid(fake.detach() - real.detach()) / 3
    assert torch.allclose(real.grad, expected, rtol=1e-12) and torch.allclose(fake.grad, -expected, rtol=1e-12)


def test_losses_promote_half_precision_logits_and_refuse_unpaired_batches():
    real, fake = torch.randn(8, dtype=torch.bfloat16), torch.randn(8, dtype=torch.bfloat16)
    assert rpgan_discriminator_loss(real, fake).dtype == torch.float32
    assert rpgan_generator_loss(real, fake).dtype == torch.float32
    assert rpgan_discriminator_loss(real, fake) == rpgan_discriminator_loss(real.float(), fake.float())
    with pytest.raises(ValueError, match=r"same shape; got \(8,\) and \(4,\)"):
        rpgan_discriminator_loss(torch.zeros(8), torch.zeros(4))


def test_penalty_of_a_quadratic_discriminator_matches_its_closed_form():
    # D(x) = <w, x> + 0.5 * x^T A x per sample, A symmetric: grad = w + A x, so the penalty is known exactly.
    torch.manual_seed(0)
    w = torch.randn(6, dtype=torch.float64)
    a = torch.randn(6, 6, dtype=torch.float64)
    a = a + a.T
    d = lambda x: x.flatten(1) @ w + 0.5 * ((x.flatten(1) @ a) * x.flatten(1)).sum(1)  # noqa: E731
    x = torch.randn(5, 1, 2, 3, dtype=torch.float64)
    expected = ((w + x.flatten(1) @ a) ** 2).sum(1).mean()
    assert torch.allclose(zero_centred_gradient_penalty(d, x), expected, rtol=1e-12)
    real, fake = x, torch.randn_like(x)
    r1, r2 = r1_r2_penalties(d, real, fake)
    assert torch.allclose(r1, expected, rtol=1e-12)
    assert torch.allclose(r2, ((w + fake.flatten(1) @ a) ** 2).sum(1).mean(), rtol=1e-12)


def _tiny_discriminator() -> nn.Module:
    torch.manual_seed(0)
    d = R3GANDiscriminator(16, 1, widths=8, blocks_per_stage=1, group_size=4).double()
    with torch.no_grad():  # wake the zero-initialised layers and biases up, so every parameter matters
        for p in d.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return d


def test_batched_penalties_equal_per_sample_gradients_taken_one_by_one():
    d = _tiny_discriminator()
    real, fake = torch.randn(3, 1, 16, 16, dtype=torch.float64), torch.randn(3, 1, 16, 16, dtype=torch.float64)
    r1, r2 = r1_r2_penalties(d, real, fake)

    def one_by_one(images):
        norms = []
        for image in images:
            image = image[None].clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(d(image).sum(), image)
            norms.append(grad.pow(2).sum())
        return torch.stack(norms).mean()

    # Different batch sizes change only the order of float64 sums in the convolutions.
    assert torch.allclose(r1, one_by_one(real), rtol=1e-10)
    assert torch.allclose(r2, one_by_one(fake), rtol=1e-10)
    assert torch.allclose(zero_centred_gradient_penalty(d, real), r1, rtol=1e-10)


def test_penalty_gradients_match_finite_differences():
    # The penalty is differentiated with respect to D's weights through the input gradient (double backward);
    # gradcheck compares that with central finite differences in float64. A 2-layer conv net with a smooth
    # non-linearity (softplus; leaky ReLU's kink would make finite differences jump) keeps it small.
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Softplus(), nn.Flatten(), nn.Linear(2 * 3 * 3, 1, bias=False)).double()
    names = [name for name, _ in d.named_parameters()]
    real, fake = torch.randn(2, 1, 5, 5, dtype=torch.float64), torch.randn(2, 1, 5, 5, dtype=torch.float64)

    def penalties(*params):
        weights = dict(zip(names, params))
        r1, r2 = r1_r2_penalties(lambda x: functional_call(d, weights, (x,)).flatten(), real, fake)
        return r1, r2

    params = tuple(p.detach().clone().requires_grad_(True) for p in d.parameters())
    assert torch.autograd.gradcheck(penalties, params, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_penalties_run_in_float32_without_autocast_and_stop_at_the_images():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    g = nn.Linear(2, 3 * 8 * 8)
    fake = g(torch.randn(4, 2)).view(4, 3, 8, 8)
    real = torch.randn(4, 3, 8, 8)
    seen_dtypes = []
    d.register_forward_hook(lambda module, inputs, output: seen_dtypes.append(output.dtype))
    plain = r1_r2_penalties(lambda x: d(x).flatten(), real, fake)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = r1_r2_penalties(lambda x: d(x).flatten(), real.bfloat16(), fake)
    assert seen_dtypes == [torch.float32, torch.float32]
    assert under_autocast[0].dtype == torch.float32
    # Same float32 computation on the same values (real was made bf16 and back: compare on those values).
    assert torch.equal(under_autocast[1], plain[1])
    assert torch.equal(under_autocast[0], r1_r2_penalties(lambda x: d(x).flatten(), real.bfloat16().float(), fake)[0])
    sum(plain).backward()
    assert d[0].weight.grad is not None and d[0].bias.grad is not None and d[3].weight.grad.abs().sum() > 0
    assert d[3].bias.grad is None  # the last bias shifts D(x) and leaves its input gradient alone
    assert g.weight.grad is None  # the penalty never reaches the generator


def test_penalty_from_logits_reuses_a_forward():
    d = _tiny_discriminator().float()
    real = torch.randn(2, 1, 16, 16, requires_grad=True)
    logits = d(real)
    assert torch.equal(gradient_penalty_from_logits(logits, real), zero_centred_gradient_penalty(d, real))
    with pytest.raises(ValueError, match="inputs must require grad"):
        gradient_penalty_from_logits(d(real.detach()), real.detach())
    with pytest.raises(ValueError, match=r"same shape, got \(2, 1, 16, 16\) and \(1, 1, 16, 16\)"):
        r1_r2_penalties(d, real, real[:1])
