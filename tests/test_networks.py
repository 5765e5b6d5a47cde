import pytest
import torch

from lightning_gen.networks import ConvDecoder, ConvEncoder, DCGANDiscriminator, DCGANGenerator


@pytest.mark.parametrize("image_size", [16, 32, 64, 128, 256])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_dcgan_shapes_for_every_supported_size(image_size, channels):
    g = DCGANGenerator(image_size, channels, latent_dim=8, width=4)
    d = DCGANDiscriminator(image_size, channels, width=4)
    images = g(torch.randn(2, 8))
    assert images.shape == (2, channels, image_size, image_size)
    assert images.min() >= -1 and images.max() <= 1  # Tanh output
    assert d(images).shape == (2,)


@pytest.mark.parametrize("image_size", [16, 64, 256])
def test_vae_networks_mirror_each_other(image_size):
    enc, dec = ConvEncoder(image_size, 2, latent_dim=5, width=4), ConvDecoder(image_size, 2, latent_dim=5, width=4)
    mu, logvar = enc(torch.randn(3, 2, image_size, image_size))
    assert mu.shape == logvar.shape == (3, 5)
    assert dec(mu).shape == (3, 2, image_size, image_size)


def test_dcgan_recipe_layers_and_init():
    torch.manual_seed(0)
    g, d = DCGANGenerator(64, 3, 100, 64), DCGANDiscriminator(64, 3, 64)
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    assert any(isinstance(m, torch.nn.ReLU) for m in g.modules()) and any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    leaky = [m for m in d.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == 0.2 for m in leaky)
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in d.modules())
    conv_weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(conv_weights.mean().item()) < 1e-3 and conv_weights.std().item() == pytest.approx(0.02, rel=0.05)
    bn_weights = torch.cat([m.weight for m in d.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert bn_weights.mean().item() == pytest.approx(1.0, abs=0.01)


def test_discriminator_options():
    sn = DCGANDiscriminator(32, 3, 8, spectral_norm=True)
    assert any(hasattr(m, "parametrizations") for m in sn.modules())
    layer = DCGANDiscriminator(32, 3, 8, norm="layer")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in layer.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in layer.modules())
    # With per-sample normalisation, one sample's logit does not depend on the rest of the batch.
    layer.eval()
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(layer(x)[:1], layer(x[:1]), atol=1e-6)


def test_conditional_networks_use_labels():
    torch.manual_seed(0)
    g, d = DCGANGenerator(16, 3, 8, 4, num_classes=5), DCGANDiscriminator(16, 3, 4, num_classes=5)
    g.eval()
    z = torch.randn(2, 8)
    a, b = g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    assert d(a, torch.tensor([0, 1])).shape == (2,)
    with pytest.raises(ValueError, match="class-conditional"):
        g(z)


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: DCGANGenerator(image_size=48), r"image_size must be a power of two from 16 to 256.*48"),
        (lambda: DCGANGenerator(image_size=512), r"image_size.*512"),
        (lambda: DCGANDiscriminator(image_size=8), r"image_size.*8"),
        (lambda: DCGANGenerator(channels=0), r"channels must be an integer >= 1, got 0"),
        (lambda: DCGANDiscriminator(norm="instance"), r"norm must be one of \('batch', 'layer', 'none'\), got 'instance'"),
        (lambda: ConvEncoder(latent_dim=0), r"latent_dim must be an integer >= 1"),
    ],
)
def test_invalid_arguments_name_the_argument(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_networks_do_not_import_lightning():
    """Networks must stay plain nn.Modules so they can be exported and loaded without a Trainer."""
    import ast
    from pathlib import Path

    import lightning_gen.networks as networks

    for path in Path(networks.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("lightning.", "pytorch_lightning")) and name != "lightning", f"{path.name} imports {name}"
                assert name not in ("lightning_gen.gan", "lightning_gen.vae", "lightning_gen._base"), f"{path.name} imports {name}"
