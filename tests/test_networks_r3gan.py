import math

import pytest
import torch
from torch import nn

from lightning_gen.networks.r3gan import (
    R3GAN_CONFIGS,
    R3GANDiscriminator,
    R3GANGenerator,
    Resample2d,
    ResidualBlock,
    binomial_kernel,
    create_r3gan,
    r3gan_cifar32,
    r3gan_cpu32,
)

TINY = {"widths": 8, "blocks_per_stage": 1, "group_size": 4}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _randomise_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter, so the zero-initialised layers and biases take part in the computation."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=rng) * 0.3)
    return module


@pytest.mark.parametrize("image_size, channels", [(16, 1), (32, 3), (64, 1), (128, 3), (256, 1)])
def test_shapes_for_every_supported_size(image_size, channels):
    g = R3GANGenerator(image_size, channels, latent_dim=4, **TINY)
    d = R3GANDiscriminator(image_size, channels, **TINY)
    images = g(torch.randn(1, 4))
    assert images.shape == (1, channels, image_size, image_size)
    assert d(images).shape == (1,)
    assert len(g.stages) == len(d.stages) == int(math.log2(image_size)) - 1  # 4x4 .. image_size


def test_paper_cifar_config_parameter_counts():
    # Computed, not trained. The same counts come out of the authors' R3GAN/Networks.py built with the
    # CIFAR10 preset of their train.py (768 channels and 2 blocks at 4, 8, 16 and 32 px, cardinality 96,
    # expansion 2, noise 64; conditional: G embeds the label in 64 dims, D projects on 768).
    with torch.device("meta"):  # shapes only: no memory, no init
        g, d = r3gan_cifar32()
        assert (_count(g), _count(d)) == (20_732_160, 20_683_776)
        g, d = r3gan_cifar32(num_classes=10)
    assert (_count(g), _count(d)) == (20_781_952, 21_280_512)
    assert R3GAN_CONFIGS["cifar32"].group_size * 96 == 768 * R3GAN_CONFIGS["cifar32"].expansion  # cardinality 96


def test_cpu_config_is_small_and_the_same_code():
    g, d = r3gan_cpu32(num_classes=10)
    assert type(g) is R3GANGenerator and type(d) is R3GANDiscriminator
    assert 50_000 < _count(g) < 300_000 and 50_000 < _count(d) < 300_000
    assert g(torch.randn(2, 64), torch.tensor([0, 9])).shape == (2, 3, 32, 32)


def test_design_no_norms_grouped_convs_leaky_relu_and_no_output_squashing():
    g, d = create_r3gan("cpu32")
    for net in (g, d):
        kinds = {type(m) for m in net.modules()}
        assert not kinds & {nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d, nn.Tanh, nn.ConvTranspose2d}
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        assert all(c.stride == (1, 1) and c.bias is None for c in convs)  # resampling is the filter's job
        blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
        assert blocks and all(b.conv.groups == b.conv.in_channels // 8 and b.conv.kernel_size == (3, 3) for b in blocks)
        assert all(b.expand.out_channels == 2 * b.expand.in_channels for b in blocks)
    # Unbounded output: with large weights the generator leaves [-1, 1] (sampling clamps, the network does not).
    _randomise_(g)
    assert g(torch.randn(4, 64)).abs().max() > 1


def test_fixup_init_makes_every_block_an_identity():
    torch.manual_seed(0)
    for blocks in (1, 3):
        g = R3GANGenerator(32, 3, 16, widths=32, blocks_per_stage=blocks, group_size=8)
        residuals = [m for m in g.modules() if isinstance(m, ResidualBlock)]
        assert len(residuals) == 4 * blocks
        x = torch.randn(2, 32, 8, 8)
        for block in residuals:
            assert torch.count_nonzero(block.project.weight) == 0
            assert torch.equal(block(x), x)
        # The layers before the zero one are scaled by L ** (-1/4) for L blocks in the network (R3GAN's choice),
        # around He's std sqrt(2 / (1 + 0.2^2)) / sqrt(fan_in).
        expected = math.sqrt(2 / 1.04) * (4 * blocks) ** -0.25 / math.sqrt(32)
        weights = torch.cat([b.expand.weight.flatten() for b in residuals])
        assert weights.std().item() == pytest.approx(expected, rel=0.05)


def test_resampling_uses_the_normalised_binomial_filter():
    kernel = binomial_kernel()
    assert torch.allclose(kernel * 64, torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])))
    # A single impulse spreads into [1, 3, 3, 1] x [1, 3, 3, 1] / 64 times 4 (zero insertion keeps a quarter of
    # the pixels, so the filter carries gain 4 to keep the mean).
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0
    up = Resample2d(1, "up")(x)
    assert up.shape == (1, 1, 8, 8)
    assert torch.allclose(up.sum(), torch.tensor(4.0))
    assert torch.allclose(up[0, 0, 1:5, 1:5], 4 * kernel)
    # Downsampling a constant keeps it away from the borders; the total mass shrinks 4x.
    down = Resample2d(2, "down")(torch.ones(1, 2, 8, 8))
    assert down.shape == (1, 2, 4, 4) and torch.allclose(down[:, :, 1:-1, 1:-1], torch.ones(1, 2, 2, 2))
    assert "kernel" not in Resample2d(3, "up").state_dict()  # a constant, not a weight


def test_conditioning_embedding_in_g_projection_in_d():
    torch.manual_seed(0)
    g = _randomise_(R3GANGenerator(16, 3, 8, num_classes=5, **TINY))
    d = _randomise_(R3GANDiscriminator(16, 3, num_classes=5, **TINY))
    z = torch.randn(2, 8)
    a, b = g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    assert g.label_embedding.embedding_dim == 8  # the noise size, as in R3GAN
    assert d.label_projection.embedding_dim == 8  # the 4x4 width, as in R3GAN
    # Projection: the logit is linear in the class embedding; features (B, E) dotted with embed(label).
    images = torch.randn(3, 3, 16, 16)
    labels = torch.tensor([0, 3, 4])
    features = d.stages(d.from_image(images))
    assert torch.allclose(d(images, labels), (features * d.label_projection.weight[labels]).sum(1), atol=1e-6)
    with pytest.raises(ValueError, match="class-conditional"):
        g(z)
    with pytest.raises(ValueError, match="class-conditional"):
        d(images)


def test_each_logit_depends_on_its_own_image_only():
    # No normalisation across the batch: what the per-sample R1/R2 penalties assume.
    d = _randomise_(R3GANDiscriminator(16, 1, **TINY)).train()
    x = torch.randn(4, 1, 16, 16)
    assert torch.allclose(d(x)[:1], d(x[:1]), atol=1e-6)


def test_channels_last_matches_contiguous_forward():
    g = _randomise_(R3GANGenerator(16, 3, 8, num_classes=3, **TINY))
    d = _randomise_(R3GANDiscriminator(16, 3, num_classes=3, **TINY))
    z, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    images = g(z, labels)
    logits = d(images, labels)
    g_cl, d_cl = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    images_cl = g_cl(z, labels)
    logits_cl = d_cl(images_cl.contiguous(memory_format=torch.channels_last), labels)
    # The same float32 arithmetic in another memory layout: only the order of the convolutions' sums may
    # change, a few ulps per layer over ~20 layers; 1e-5 of the output's scale bounds that with margin.
    assert torch.allclose(images_cl, images, rtol=0, atol=1e-5 * images.abs().max().item())
    assert torch.allclose(logits_cl, logits, rtol=0, atol=1e-5 * logits.abs().max().item())


def test_compiles_as_one_graph():
    g = _randomise_(R3GANGenerator(16, 3, 8, num_classes=3, **TINY))
    d = _randomise_(R3GANDiscriminator(16, 3, num_classes=3, **TINY))
    z, labels = torch.randn(2, 8), torch.tensor([0, 2])
    # fullgraph: any graph break raises. The eager backend runs what Dynamo captured without generating
    # code, which keeps the test in seconds on a CPU; codegen itself is torch's to test.
    compiled_g = torch.compile(g, fullgraph=True, backend="eager")
    compiled_d = torch.compile(d, fullgraph=True, backend="eager")
    images = compiled_g(z, labels)
    assert torch.allclose(images, g(z, labels), atol=1e-6)
    compiled_d(images, labels).sum().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_bf16_autocast_runs_in_bf16_and_tracks_fp32():
    g = _randomise_(R3GANGenerator(16, 3, 8, **TINY), seed=1)
    d = _randomise_(R3GANDiscriminator(16, 3, **TINY), seed=2)
    z = torch.randn(8, 8)
    reference = d(g(z))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        images = g(z)
        logits = d(images)
    assert images.dtype == logits.dtype == torch.bfloat16
    assert torch.isfinite(logits.float()).all()
    # bf16 keeps 8 mantissa bits (relative rounding 2^-9 per op); over ~20 layers the errors add up to a few
    # percent of the output's scale at most.
    assert (logits.float() - reference).abs().max() <= 0.05 * reference.abs().max()


def test_double_backward_for_gradient_penalties():
    d = _randomise_(R3GANDiscriminator(16, 1, **TINY))
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters())


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: R3GANGenerator(image_size=48), r"image_size must be a power of two from 16 to 256.*48"),
        (lambda: R3GANDiscriminator(image_size=8), r"image_size.*8"),
        (lambda: R3GANGenerator(32, widths=(8, 8)), r"widths needs one entry per resolution from 4x4 to 32x32 \(4 entries\), got 2"),
        (lambda: R3GANDiscriminator(32, blocks_per_stage=(1, 0, 1, 1)), r"blocks_per_stage must be an integer >= 1, got 0"),
        (lambda: R3GANGenerator(32, widths=12, group_size=16), r"group_size=16 must divide the hidden width.*24"),
        (lambda: R3GANGenerator(num_classes=-1), r"num_classes must be >= 0"),
        (lambda: create_r3gan("cifar64"), r"config must be one of \['cifar32', 'cpu32'\]"),
        (lambda: create_r3gan("cpu32", width=3), r"Unknown R3GANConfig fields \['width'\]"),
    ],
)
def test_invalid_arguments_name_the_argument(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_create_overrides_fields():
    g, d = create_r3gan("cpu32", channels=1, latent_dim=16, image_size=16, widths=(16, 16, 8))
    assert g(torch.randn(1, 16)).shape == (1, 1, 16, 16)
    assert d(torch.randn(1, 1, 16, 16)).shape == (1,)
    assert [s[0].resample.channels for s in g.stages[1:]] == [16, 8]  # the widths given
    # Another size without widths: the config's coarse stages, the finest dropped or repeated.
    small, large = create_r3gan("cpu32", image_size=16), create_r3gan("cpu32", image_size=64)
    assert [len(s) for s in small.generator.stages] == [2, 2, 2]
    assert [s[0].resample.channels for s in large.generator.stages[1:]] == [64, 32, 32, 32]
