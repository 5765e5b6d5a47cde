"""Truncation (BigGAN in z, StyleGAN in w), interpolation and walks: ``lightning_gen.latents`` and the modules' use of it."""

import math

import lightning as L
import pytest
import torch
from torch import nn

from lightning_gen import VAE, GANModule
from lightning_gen.latents import (
    MappingNetwork,
    check_truncation,
    interpolate_latents,
    slerp,
    truncated_normal,
    truncation_psi,
    truncation_threshold,
    walk_latents,
    walk_weights,
)
from lightning_gen.predict import ImageWriter, SeedDataModule


def _seeded(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------------------------
# Truncated normal draws.
def test_threshold_and_psi_are_inverse_and_match_biggan_thresholds():
    assert truncation_threshold(1.0) == math.inf
    assert truncation_psi(math.inf) == 1.0
    for psi in (0.25, 0.5, 0.9):
        assert truncation_psi(truncation_threshold(psi)) == pytest.approx(psi, abs=1e-12)
    # BigGAN's usual thresholds 1 and 2 are the one- and two-sigma shares of N(0, 1).
    assert truncation_threshold(0.682689492) == pytest.approx(1.0, abs=1e-6)
    assert truncation_threshold(0.954499736) == pytest.approx(2.0, abs=1e-6)


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, True, "0.5"])
def test_bad_truncation_is_refused_with_the_range(bad):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        check_truncation(bad)


def test_truncated_normal_is_seeded_bounded_and_distributed_as_a_truncated_gaussian():
    threshold = truncation_threshold(0.5)
    first = truncated_normal((4000, 16), threshold, _seeded(3))
    assert torch.equal(first, truncated_normal((4000, 16), threshold, _seeded(3)))
    assert first.abs().max() <= threshold
    # Redrawing (not clamping): no mass piles up at the bound, and the variance is the truncated normal's,
    # 1 - 2 t phi(t) / (2 Phi(t) - 1). 64,000 draws: the sample variance's standard error is ~0.001.
    assert (first.abs() > 0.999 * threshold).float().mean() < 0.005
    phi = math.exp(-threshold**2 / 2) / math.sqrt(2 * math.pi)
    expected_var = 1 - 2 * threshold * phi / 0.5
    assert first.var().item() == pytest.approx(expected_var, abs=0.006)


def test_infinite_threshold_is_exactly_the_plain_draw():
    assert torch.equal(truncated_normal((5, 7), math.inf, _seeded(1)), torch.randn(5, 7, generator=_seeded(1)))


# ------------------------------------------------------------------------------------------------------------------
# Truncation in sample / iter_samples / predict.
def _models():
    return [
        GANModule(image_size=16, channels=1, latent_dim=8, width=4),
        GANModule(image_size=16, channels=3, latent_dim=8, width=4, num_classes=3, ema_decay=0.9),
        VAE(image_size=16, channels=1, latent_dim=4, width=8),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["gan", "conditional-ema-gan", "vae"])
def test_psi_one_is_bit_identical_to_plain_sampling(index):
    model = _models()[index]
    plain = model.sample(6, seed=4, batch_size=4)
    assert torch.equal(model.sample(6, seed=4, batch_size=4, truncation=1.0), plain)
    assert torch.equal(model.sample(6, seed=4, batch_size=4, truncation=None), plain)


@pytest.mark.parametrize("index", [0, 1, 2], ids=["gan", "conditional-ema-gan", "vae"])
def test_truncated_samples_are_the_generator_on_truncated_latents(index):
    model = _models()[index].eval()
    psi = 0.4
    images = model.sample(5, seed=2, truncation=psi)
    assert torch.equal(images, model.sample(5, seed=2, truncation=psi))  # deterministic under a seed
    assert not torch.equal(images, model.sample(5, seed=2))
    z = truncated_normal((5, model.latent_dim), truncation_threshold(psi), _seeded(2))
    labels = torch.arange(5) % model.num_classes if model.num_classes else None
    with torch.no_grad():
        expected = model._sample_batch(z, labels).clamp(-1, 1)  # the same kernels on the same latents
    assert torch.equal(images, expected)
    chunks = torch.cat(list(model.iter_samples(5, seed=2, batch_size=2, truncation=psi)))
    assert torch.equal(chunks, model.sample(5, seed=2, batch_size=2, truncation=psi))


def test_predict_with_truncation_matches_sample_of_each_seed(tmp_path):
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=4)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[ImageWriter(tmp_path)])
    predictions = trainer.predict(model, datamodule=SeedDataModule(n=3, start=5, batch_size=2, truncation=0.5))
    images = torch.cat(predictions)
    for offset in range(3):
        assert torch.equal(images[offset], model.sample(1, seed=5 + offset, truncation=0.5)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000005.png", "000006.png", "000007.png"]
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        SeedDataModule(truncation=2.0)


def test_predicting_given_latents_with_gaussian_truncation_is_refused():
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=4)
    with pytest.raises(ValueError, match="mapping network"):
        model.predict_step({"latents": torch.randn(2, 8), "truncation": 0.5}, 0)


# ------------------------------------------------------------------------------------------------------------------
# The StyleGAN form for generators with a mapping network.
class TinyMappingGenerator(nn.Module):
    """Implements the MappingNetwork protocol: forward(z) == synthesis(mapping(z))."""

    def __init__(self, latent_dim=8, w_dim=6, size=16):
        super().__init__()
        self.latent_dim, self.size = latent_dim, size
        self.map = nn.Sequential(nn.Linear(latent_dim, w_dim), nn.LeakyReLU(0.2))
        self.to_image = nn.Linear(w_dim, size * size)
        self.register_buffer("w_avg", torch.linspace(-0.5, 0.5, w_dim))

    def mapping(self, z, labels=None):
        return self.map(z)

    def synthesis(self, w):
        return torch.tanh(self.to_image(w)).reshape(-1, 1, self.size, self.size)

    def forward(self, z, labels=None):
        return self.synthesis(self.mapping(z, labels))


def test_a_mapping_network_is_truncated_toward_w_avg():
    generator = TinyMappingGenerator()
    assert isinstance(generator, MappingNetwork)
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=4, generator=generator)
    plain = model.sample(4, seed=1)
    assert torch.equal(model.sample(4, seed=1, truncation=1.0), plain)
    z = torch.randn(4, 8, generator=_seeded(1))  # not redrawn: truncation happens in w
    with torch.no_grad():
        w = generator.mapping(z)
        expected = generator.synthesis(generator.w_avg + 0.3 * (w - generator.w_avg))
        mean_image = generator.synthesis(generator.w_avg[None])
    truncated = model.sample(4, seed=1, truncation=0.3)
    # torch.lerp and the written-out formula round differently: a few float32 ulps on w, less after tanh.
    torch.testing.assert_close(truncated, expected, atol=1e-6, rtol=0)
    # Smaller psi: images closer to the mean latent's.
    distance = lambda psi: (model.sample(4, seed=1, truncation=psi) - mean_image).abs().mean()  # noqa: E731
    assert distance(0.1) < distance(0.5) < distance(1.0)
    assert torch.equal(model.predict_step({"seeds": torch.tensor([1]), "truncation": 0.3}, 0)[0], model.sample(1, seed=1, truncation=0.3)[0])


def test_a_generator_without_the_protocol_gets_gaussian_truncation():
    generator = TinyMappingGenerator()
    del generator.w_avg  # no mean latent: not a MappingNetwork
    assert not isinstance(generator, MappingNetwork)
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=4, generator=generator)
    z = truncated_normal((3, 8), truncation_threshold(0.3), _seeded(0))
    with torch.no_grad():
        assert torch.equal(model.sample(3, seed=0, truncation=0.3), generator(z).clamp(-1, 1))


# ------------------------------------------------------------------------------------------------------------------
# Interpolation and walks.
def test_slerp_stays_on_the_sphere_and_lerp_is_straight():
    z1, z2 = torch.randn(2, 64, generator=_seeded(0))
    z2 = z2 * (z1.norm() / z2.norm())  # same norm: slerp keeps it all the way
    path = interpolate_latents(z1, z2, 9, "slerp")
    torch.testing.assert_close(path.norm(dim=-1), z1.norm().expand(9), rtol=1e-5, atol=0)
    straight = interpolate_latents(z1, z2, 9, "lerp")
    assert straight[4].norm() < 0.9 * z1.norm()  # a chord of nearly orthogonal vectors dips toward the origin
    torch.testing.assert_close(path[0], z1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(path[-1], z2, rtol=1e-5, atol=1e-6)
    # Parallel latents (angle 0): no division by sin(0).
    assert torch.isfinite(slerp(z1, 2 * z1, torch.tensor(0.5))).all()


def test_interpolation_arguments_are_checked():
    with pytest.raises(ValueError, match="method"):
        interpolate_latents(torch.zeros(3), torch.ones(3), 4, "cubic")
    with pytest.raises(ValueError, match="steps"):
        interpolate_latents(torch.zeros(3), torch.ones(3), 1)
    with pytest.raises(ValueError, match="same shape"):
        interpolate_latents(torch.zeros(3), torch.ones(4), 4)


def test_walks_pass_through_their_points():
    points = torch.randn(4, 8, generator=_seeded(0))
    path = walk_latents(points, steps=5, method="lerp")
    assert path.shape == (16, 8)
    assert torch.equal(path[::5], points)
    looped = walk_latents(points, steps=5, loop=True)
    assert looped.shape == (20, 8)
    start, end, t = walk_weights(4, 5, loop=True)
    assert end[-1] == 0 and t[:5].tolist() == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


# A frame generated in a batch of frames and the same latent generated alone go through convolutions blocked
# differently for the batch size: float32 sums in another order, ~1e-7 relative on outputs of magnitude <= 1.
BATCH_REORDERING = {"atol": 1e-6, "rtol": 1e-5}


def _lively(model):
    """He init instead of DCGAN's N(0, 0.02): an untrained generator's images then vary (std ~0.3, not ~1e-4)."""
    for module in model.generator.modules():
        if isinstance(module, nn.ConvTranspose2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.Embedding):
            module.reset_parameters()
    return model.eval()


def test_gan_interpolate_matches_the_generator_at_both_ends():
    model = _lively(GANModule(image_size=16, channels=1, latent_dim=8, width=4))
    z1, z2 = torch.randn(2, 8, generator=_seeded(5))
    images = model.interpolate(z1, z2, steps=5, method="lerp")
    assert images.shape == (5, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(images[0], model(z1[None])[0], **BATCH_REORDERING)  # lerp at t=0 is z1 exactly
        # z1 + 1 * (z2 - z1) rounds z2 by an ulp or so; the generator turns that into ~1e-7 differences.
        torch.testing.assert_close(images[-1], model(z2[None])[0], atol=1e-5, rtol=0)
    batch = model.interpolate(torch.randn(3, 8), torch.randn(3, 8), steps=4)
    assert batch.shape == (3, 4, 1, 16, 16)


def test_conditional_interpolation_keeps_or_morphs_the_label():
    model = _lively(GANModule(image_size=16, channels=1, latent_dim=8, width=4, num_classes=3))
    z = torch.randn(8, generator=_seeded(2))
    kept = model.interpolate(z, z, steps=3, labels=2)
    with torch.no_grad():
        class_0, class_2 = model(z[None], torch.tensor([0]))[0], model(z[None], torch.tensor([2]))[0]
    torch.testing.assert_close(kept[0], class_2, **BATCH_REORDERING)
    torch.testing.assert_close(kept[-1], class_2, **BATCH_REORDERING)
    morphed = model.interpolate(z, z, steps=3, labels=(0, 2))
    # The ends are the two classes (mixtures with weights 0 and 1 of the embeddings: E0 + 1 * (E2 - E0) rounds
    # E2 by an ulp), the middle neither.
    torch.testing.assert_close(morphed[0], class_0, **BATCH_REORDERING)
    torch.testing.assert_close(morphed[-1], class_2, atol=1e-5, rtol=1e-5)
    gap = (class_0 - class_2).abs().mean()
    assert gap > 1e-3  # the classes look different (far above the rounding of the comparisons above)
    assert (morphed[1] - class_0).abs().mean() > 0.2 * gap and (morphed[1] - class_2).abs().mean() > 0.2 * gap
    # The generator got its real embedding back.
    assert isinstance(model.generator.label_embedding, nn.Embedding)


def test_morphing_needs_a_label_embedding():
    class NoEmbedding(nn.Module):
        latent_dim, num_classes = 8, 2

        def __init__(self):
            super().__init__()
            self.table = nn.Embedding(2, 8)
            self.out = nn.Linear(16, 256)

        def forward(self, z, labels):
            return torch.tanh(self.out(torch.cat([z, self.table(labels)], 1))).reshape(-1, 1, 16, 16)

    model = GANModule(image_size=16, channels=1, latent_dim=8, width=4, num_classes=2, generator=NoEmbedding())
    z = torch.randn(8)
    assert model.interpolate(z, z, steps=2, labels=1).shape == (2, 1, 16, 16)  # keeping a label works
    with pytest.raises(ValueError, match="label_embedding"):
        model.interpolate(z, z, steps=2, labels=(0, 1))


def test_gan_walk_frames_and_labels():
    model = _lively(GANModule(image_size=16, channels=1, latent_dim=8, width=4, num_classes=2))
    points = torch.randn(3, 8, generator=_seeded(1))
    frames = model.walk(points, steps=4, labels=torch.tensor([1, 1, 0]))
    assert frames.shape == (9, 1, 16, 16)
    with torch.no_grad():
        # A point where the label is kept.
        torch.testing.assert_close(frames[4], model(points[1:2], torch.tensor([1]))[0], **BATCH_REORDERING)
    with pytest.raises(ValueError, match="one label per point"):
        model.walk(points, steps=4, labels=torch.tensor([1, 0]))
    unconditional = GANModule(image_size=16, channels=1, latent_dim=8, width=4)
    assert unconditional.walk(points, steps=2, loop=True).shape == (6, 1, 16, 16)
