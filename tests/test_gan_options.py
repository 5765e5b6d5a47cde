"""GANModule options whose defaults depend on other arguments, and combinations refused up front."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from _core_helpers import image_loader, trainer
from lightning_gen import GANModule

TINY = dict(image_size=16, latent_dim=8, width=8)


# ------------------------------------------------------------------------------------------------------
# wgan-gp's own Adam betas and n_critic when the user set neither.
def test_wgan_gp_uses_the_papers_betas_and_n_critic_unless_set():
    model = GANModule(**TINY, loss="wgan-gp")
    assert (model.hparams.n_critic, model.hparams.betas_g, model.hparams.betas_d) == (5, (0.0, 0.9), (0.0, 0.9))
    opt_g, opt_d = model.configure_optimizers()
    assert opt_g.defaults["betas"] == opt_d.defaults["betas"] == (0.0, 0.9)
    # What the user sets wins, argument by argument.
    model = GANModule(**TINY, loss="wgan-gp", n_critic=2, betas_g=(0.5, 0.99))
    assert (model.hparams.n_critic, model.hparams.betas_g, model.hparams.betas_d) == (2, (0.5, 0.99), (0.0, 0.9))
    # The other losses keep DCGAN's.
    model = GANModule(**TINY, loss="hinge")
    assert (model.hparams.n_critic, model.hparams.betas_g, model.hparams.betas_d) == (1, (0.5, 0.999), (0.5, 0.999))


def test_resolved_defaults_round_trip_through_checkpoints_and_older_checkpoints_keep_theirs(tmp_path):
    model = GANModule(**TINY, loss="wgan-gp")
    t = trainer(tmp_path, max_steps=1)
    t.fit(model, image_loader(n=8))
    t.save_checkpoint(tmp_path / "new.ckpt")
    loaded = GANModule.load_from_checkpoint(tmp_path / "new.ckpt", weights_only=True)
    assert loaded.hparams == model.hparams and loaded.hparams.n_critic == 5
    # A checkpoint written before None meant "the loss's default" holds the old explicit values: they stay.
    checkpoint = torch.load(tmp_path / "new.ckpt", weights_only=True)
    checkpoint["hyper_parameters"].update(n_critic=1, betas_g=(0.5, 0.999), betas_d=(0.5, 0.999))
    for key in ("ema_batchnorm", "fake_labels"):  # arguments older versions did not have
        checkpoint["hyper_parameters"].pop(key)
    torch.save(checkpoint, tmp_path / "old.ckpt")
    old = GANModule.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True)
    assert (old.hparams.n_critic, old.hparams.betas_g, old.hparams.ema_batchnorm, old.hparams.fake_labels) == (1, (0.5, 0.999), "average", "data")


def test_command_line_leaves_unset_arguments_to_the_loss():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(GANModule, "model", skip={"generator", "discriminator", "g_optimizer", "d_optimizer", "g_lr_scheduler", "d_lr_scheduler"})
    for argv, expected in [(["--model.loss=wgan-gp"], (5, (0.0, 0.9))), (["--model.loss=wgan-gp", "--model.n_critic=1", "--model.betas_g=[0.5, 0.9]"], (1, (0.5, 0.9)))]:
        config = parser.parse_args(["--model.image_size=16", "--model.latent_dim=8", "--model.width=8", *argv])
        model = GANModule(**config.model)
        assert (model.hparams.n_critic, model.hparams.betas_g) == expected


# ------------------------------------------------------------------------------------------------------
# compile=True with penalties that need a double backward through the discriminator.
def test_torch_still_cannot_double_backward_through_a_compiled_network():
    """Why the combination is refused. When this starts failing, torch supports it: compare the penalty's
    gradient with the eager one and lift ``GenerativeModule._refuse_compiled_double_backward``."""
    torch._dynamo.reset()
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    net.compile(backend="aot_eager")  # AOTAutograd, as behind inductor, without compiling C++
    x = torch.randn(3, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="does not currently support double backward"):
        grad.pow(2).sum().backward()


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(loss="wgan-gp"), "gp_weight=10.0"),
        (dict(loss="hinge", r1_weight=1.0), "r1_weight=1.0"),
        (dict(loss="wgan-gp", r1_weight=0.5), "gp_weight=10.0, r1_weight=0.5"),
    ],
)
def test_compile_with_a_double_backward_penalty_is_refused_up_front(kwargs, named):
    with pytest.raises(ValueError, match=rf"compile=True can't be combined with {named}: .*double backward.*compile=False.*model.generator.compile\(\)"):
        GANModule(**TINY, compile=True, **kwargs)
    d = GANModule(**TINY, **kwargs).discriminator
    d.compile(backend="aot_eager")  # compiled by hand, in place: caught too
    with pytest.raises(ValueError, match=rf"discriminator compiled with nn.Module.compile\(\) can't be combined with {named}"):
        GANModule(**TINY, discriminator=d, **kwargs)
    # Without the penalty, compile stays available.
    GANModule(**TINY, compile=True, loss=kwargs["loss"], gp_weight=0.0)
    # configure_model checks again (hparams edited after construction).
    model = GANModule(**TINY, **kwargs)
    model.hparams.compile = {"backend": "aot_eager"}
    with pytest.raises(ValueError, match="compile=\\{'backend': 'aot_eager'\\} can't be combined"):
        model.configure_model()


def test_the_named_alternative_trains_a_compiled_generator_with_the_penalty(tmp_path):
    torch._dynamo.reset()
    model = GANModule(**TINY, loss="wgan-gp", n_critic=1, ema_decay=0.9)
    model.generator.compile(backend="aot_eager")
    trainer(tmp_path, max_steps=4).fit(model, image_loader(n=16))
    assert model.generator._compiled_call_impl is not None and model.generator_step == 2
    assert set(model.state_dict()) == set(GANModule(**TINY, loss="wgan-gp", ema_decay=0.9).state_dict())


# ------------------------------------------------------------------------------------------------------
# fake_labels: what the generator is conditioned on during training.
class RecordGeneratorLabels(torch.nn.Module):
    def __init__(self, generator, seen):
        super().__init__()
        self.generator, self.seen = generator, seen

    def forward(self, z, labels):
        if self.training:  # not the epoch-end sample grid
            self.seen.append(labels.clone())
        return self.generator(z, labels)


@pytest.mark.parametrize("fake_labels", ["data", "uniform"])
def test_fake_labels_follow_the_data_or_are_uniform(tmp_path, fake_labels):
    from lightning_gen.networks import DCGANGenerator

    seen, real = [], []
    # Imbalanced data: 152 images of class 0, 8 of class 2, none of classes 1 and 3.
    loader = image_loader(n=160, batch_size=16, num_classes=4)
    loader.dataset.tensors[1][:] = torch.where(torch.arange(160) % 10 == 0, torch.arange(160) % 4, 0)

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            real.append(batch[1].clone())

    generator = RecordGeneratorLabels(DCGANGenerator(16, 3, 8, 8, num_classes=4), seen)
    model = GANModule(**TINY, num_classes=4, generator=generator, fake_labels=fake_labels)
    trainer(tmp_path, max_epochs=1, callbacks=[Spy()]).fit(model, loader)
    assert len(seen) == 2 * len(real) == 20  # a D step and a G step per batch
    if fake_labels == "data":
        assert all(torch.equal(seen[2 * i], labels) and torch.equal(seen[2 * i + 1], labels) for i, labels in enumerate(real))
    else:
        drawn = torch.cat(seen)
        # 320 draws, 80 per class if uniform: Binomial(320, 1/4) has sd 7.7, so [40, 120] is 5 sd either side
        # (the seeds are fixed anyway); the data would give ~304 of class 0 and none of classes 1 and 3.
        assert all(40 <= c <= 120 for c in torch.bincount(drawn, minlength=4).tolist())
