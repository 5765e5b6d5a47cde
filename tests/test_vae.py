import math

import pytest
import torch

from _core_helpers import changed, image_loader, snapshot, trainer
from lightning_gen import VAE
from lightning_gen._base import kl_warmup_factor

TINY = dict(image_size=16, latent_dim=4, width=8)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_trains_and_logs_elbo_terms(tmp_path, likelihood):
    model = VAE(**TINY, likelihood=likelihood)
    before = snapshot(model)
    t = trainer(tmp_path, max_epochs=2)
    t.fit(model, image_loader(), image_loader(n=8))
    assert changed(before, model)
    m = t.callback_metrics
    for split in ("train", "val"):
        for term in ("reconstruction", "kl", "elbo"):
            assert math.isfinite(m[f"{split}/{term}"].item()), f"{split}/{term}"
        assert m[f"{split}/elbo"].item() == pytest.approx(-(m[f"{split}/reconstruction"] + m[f"{split}/kl"]).item(), rel=1e-5)
    assert m["train/kl"].item() >= 0
    assert model.generator_step == t.global_step == 8  # one optimizer, one step per batch


def test_reconstruction_improves_with_training(tmp_path):
    loader = image_loader(n=16, batch_size=16)
    model = VAE(**TINY, lr=3e-3)
    images = next(iter(loader))[0]
    before = model.elbo_terms(images)["nll"].item()
    trainer(tmp_path, max_epochs=30).fit(model, loader)
    model.eval()
    assert model.elbo_terms(images)["nll"].item() < before


def test_gaussian_nll_is_a_proper_log_likelihood():
    model = VAE(**TINY, gaussian_sigma=0.5).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.manual_seed(0)
    terms = model.elbo_terms(images)
    torch.manual_seed(0)
    mu, logvar = model.encode(images)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    mean = torch.tanh(model.decoder(z))
    expected = -torch.distributions.Normal(mean, 0.5).log_prob(images).flatten(1).sum(1).mean()
    assert terms["nll"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_kl_warmup_is_linear():
    assert [kl_warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert kl_warmup_factor(0, 0) == 1.0


def test_kl_warmup_in_training(tmp_path):
    t = trainer(tmp_path, max_steps=2, log_every_n_steps=1)
    t.fit(VAE(**TINY, beta=2.0, kl_warmup_steps=10), image_loader())
    assert t.callback_metrics["train/beta"].item() == pytest.approx(2.0 * 2 / 10)


def test_sample_reconstruct_interpolate():
    model = VAE(**TINY)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    s = model.sample(5, seed=1)
    assert s.shape == (5, 3, 16, 16) and s.min() >= -1 and s.max() <= 1
    assert torch.equal(s, model.sample(5, seed=1))
    assert model.reconstruct(x).shape == x.shape
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))  # posterior mean: deterministic
    path = model.interpolate(x[0], x[1], steps=5)
    assert path.shape == (5, 3, 16, 16)
    assert torch.allclose(path[0], model.reconstruct(x[:1])[0], atol=1e-6)
    assert torch.allclose(path[-1], model.reconstruct(x[1:])[0], atol=1e-6)
    assert model.interpolate(x, x.flip(0), steps=3).shape == (2, 3, 3, 16, 16)
    assert model.training
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.zeros(2))


def test_adversarial_term_is_one_argument_away(tmp_path):
    model = VAE(**TINY, adversarial_weight=0.1)
    assert model.discriminator is not None and len(model.configure_optimizers()) == 2
    vae_before, d_before = snapshot(torch.nn.ModuleList([model.encoder, model.decoder])), snapshot(model.discriminator)
    t = trainer(tmp_path, max_epochs=1)
    t.fit(model, image_loader())
    assert changed(d_before, model.discriminator) and changed(vae_before, torch.nn.ModuleList([model.encoder, model.decoder]))
    assert t.global_step == 8 and model.generator_step == 4
    assert {"train/d_loss", "train/g_loss"} <= set(t.callback_metrics)


def test_vae_gan_discriminator_trains_on_sampled_reconstructions_like_the_adversarial_term(tmp_path):
    import copy

    import lightning as L

    model = VAE(**TINY, adversarial_weight=0.1)
    initial = copy.deepcopy(model)
    seen, batches = [], []
    model.discriminator.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()) if module.training else None)

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            batches.append(batch[0].clone())

    L.seed_everything(0)
    trainer(tmp_path, max_steps=2, callbacks=[Spy()]).fit(model, image_loader(n=8))  # one batch: D step, VAE step
    real, d_fake, vae_fake = seen  # the D step sees the data and a reconstruction; the VAE step a reconstruction
    images = batches[0]
    assert torch.equal(real, images)
    # The D step's reconstruction is decoded from z ~ q(z|x), drawn with the training noise generator, by the
    # networks as they were before the batch (the same computation, so exactly equal) ...
    seed = model._noise_seed * 1_000_003 % (2**63 - 1)  # epoch 0, rank 0 (GenerativeModule.on_train_epoch_start)
    noise = torch.Generator().manual_seed(seed)
    initial.train()
    with torch.no_grad():
        sampled = initial.elbo_terms(images, noise)["reconstruction"]
        mean = initial.forward(images)
    assert torch.equal(d_fake, sampled) and not torch.allclose(d_fake, mean, atol=1e-3)
    # ... and the VAE step's adversarial term scores the next draw from the same generator, not the mean.
    with torch.no_grad():
        assert torch.equal(vae_fake, initial.elbo_terms(images, noise)["reconstruction"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(likelihood="laplace"), r"likelihood must be one of \('gaussian', 'bernoulli'\)"),
        (dict(beta=-1), r"beta must be >= 0"),
        (dict(image_size=20), r"image_size must be a power of two"),
        (dict(gaussian_sigma=0), r"gaussian_sigma must be > 0"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAE(**{**TINY, **kwargs})


def test_bf16_and_checkpoint_round_trip(tmp_path):
    model = VAE(**TINY, likelihood="bernoulli")
    t = trainer(tmp_path, max_epochs=1, precision="bf16-mixed")
    t.fit(model, image_loader())
    t.save_checkpoint(tmp_path / "vae.ckpt")
    loaded = VAE.load_from_checkpoint(tmp_path / "vae.ckpt", weights_only=True)
    assert torch.equal(loaded.sample(3, seed=0), model.sample(3, seed=0))
