"""``lightning_gen.project``: latents found by optimisation reproduce images the generator can make."""

import pytest
import torch
from torch import nn

import lightning_gen
from lightning_gen import VAE, GANModule, project
from lightning_gen.networks import DCGANGenerator
from lightning_gen.projection import ClassifierFeatures


def _lively(model):
    """He init instead of DCGAN's N(0, 0.02): an untrained generator's images then vary (std ~0.3, not ~1e-4)."""
    for module in model.generator.modules():
        if isinstance(module, nn.ConvTranspose2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.Embedding):
            module.reset_parameters()
    return model.eval()


def _targets(model, n=3, seed=11, labels=None):
    return model.sample(n, seed=seed, labels=labels)


def test_projection_reaches_images_the_generator_made():
    model = _lively(GANModule(image_size=16, channels=1, latent_dim=8, width=8))
    targets = _targets(model)
    result = project(model, targets, steps=40, lr=0.1, seed=0, progress=False)
    assert result.latents.shape == (3, 8) and result.labels is None
    assert result.reconstructions.shape == targets.shape
    # A reachable target: the error falls to a small fraction of where the random start was.
    assert (result.losses < 0.2 * result.initial_losses).all()
    torch.testing.assert_close(result.pixel_mse, (result.reconstructions - targets).pow(2).flatten(1).mean(1), atol=1e-6, rtol=1e-4)
    # The reconstruction is the generator's image of the returned latent (same batch, same kernels).
    with torch.no_grad():
        assert torch.equal(model(result.latents).clamp(-1, 1), result.reconstructions)
    again = project(model, targets, steps=40, lr=0.1, seed=0, progress=False)
    assert torch.equal(again.latents, result.latents)  # deterministic under a seed


def test_projection_leaves_the_generator_alone():
    model = _lively(GANModule(image_size=16, channels=1, latent_dim=8, width=8)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    project(model, _targets(model), steps=5, progress=False)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # gradients went to the latents only
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched


def test_conditional_labels_given_predicted_or_searched():
    model = _lively(GANModule(image_size=16, channels=1, latent_dim=8, width=8, num_classes=3))
    labels = torch.tensor([2, 0])
    targets = _targets(model, 2, labels=labels)
    given = project(model, targets, labels, steps=40, lr=0.1, progress=False)
    assert torch.equal(given.labels, labels)

    def classifier(images):  # says "class 1" for everything
        return torch.tensor([[0.0, 1.0, 0.0]]).expand(images.shape[0], 3)

    predicted = project(model, targets, classifier=classifier, steps=2, progress=False)
    assert predicted.labels.tolist() == [1, 1]
    searched = project(model, targets, steps=40, lr=0.1, progress=False)
    # Every class is tried and the best fit kept: the class that made the image.
    assert torch.equal(searched.labels, labels)
    assert (searched.losses < 0.2 * searched.initial_losses).all()
    with pytest.raises(ValueError, match="integers in"):
        project(model, targets, torch.tensor([0, 3]), steps=1, progress=False)


def test_more_restarts_never_do_worse():
    model = _lively(GANModule(image_size=16, channels=1, latent_dim=8, width=8))
    targets = _targets(model, 2, seed=3)
    one = project(model, targets, steps=20, lr=0.1, restarts=1, progress=False)
    three = project(model, targets, steps=20, lr=0.1, restarts=3, progress=False)
    # Restart 0 starts where the single run starts; the batch is three times as large (float32 reordering).
    assert (three.losses <= one.losses * (1 + 1e-4) + 1e-6).all()


def test_batching_does_not_change_the_starts():
    model = _lively(GANModule(image_size=16, channels=1, latent_dim=8, width=8))
    targets = _targets(model, 3, seed=4)
    whole = project(model, targets, steps=3, batch_size=3, progress=False)
    split = project(model, targets, steps=3, batch_size=2, progress=False)
    # Different batch sizes block the convolutions differently (float32 reordering); the starts are the same.
    torch.testing.assert_close(split.initial_losses, whole.initial_losses, atol=1e-6, rtol=1e-5)


def test_perceptual_loss_with_a_shipped_or_given_feature_network():
    model = _lively(GANModule(image_size=16, channels=3, latent_dim=8, width=8))
    targets = _targets(model, 2)
    shapes = project(model, targets, steps=6, lr=0.1, perceptual="shapes", perceptual_weight=0.5, progress=False)
    assert (shapes.losses < shapes.initial_losses).all()
    features = ClassifierFeatures(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), input_size=8)
    custom = project(model, targets, steps=6, lr=0.1, perceptual=features, progress=False)
    assert (custom.losses < custom.initial_losses).all()
    with pytest.raises(ValueError, match="perceptual must be"):
        project(model, targets, perceptual="inception-v9", progress=False)


def test_a_vae_decoder_and_a_plain_generator_can_be_projected_into():
    vae = VAE(image_size=16, channels=1, latent_dim=4, width=8).eval()
    for module in vae.decoder.modules():  # an untrained decoder's images must vary for the test to mean anything
        if isinstance(module, (nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    targets = vae.sample(2, seed=7)  # not seed 0: the projection starts from seed 0's draws
    result = project(vae, targets, steps=30, lr=0.1, progress=False)
    assert (result.losses < result.initial_losses).all()
    generator = DCGANGenerator(image_size=16, channels=1, latent_dim=8, width=4).eval()
    with torch.no_grad():
        plain_targets = generator(torch.randn(2, 8))
    assert project(generator, plain_targets, steps=3, progress=False).latents.shape == (2, 8)


def test_bad_images_are_refused_with_the_expected_shape():
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=8)
    with pytest.raises(ValueError, match=r"\(N, 1, 16, 16\)"):
        project(model, torch.zeros(2, 3, 16, 16), progress=False)
    with pytest.raises(ValueError, match="steps"):
        project(model, torch.zeros(2, 1, 16, 16), steps=0, progress=False)
    with pytest.raises(TypeError, match="latent_dim"):
        project(nn.Linear(2, 2), torch.zeros(2, 1, 16, 16), progress=False)


def test_uint8_images_are_accepted_and_project_is_exported():
    assert lightning_gen.project is project
    model = GANModule(image_size=16, channels=1, latent_dim=8, width=8)
    result = project(model, torch.full((1, 1, 16, 16), 128, dtype=torch.uint8), steps=2, progress=False)
    assert result.reconstructions.shape == (1, 1, 16, 16)
