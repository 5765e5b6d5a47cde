"""`lightning-gen zoo import-dcgan`: state dicts of the PyTorch DCGAN example become a folder that samples the same images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_gen import GANModule
from lightning_gen.cli.zoo import main


class Generator(nn.Module):
    """The PyTorch DCGAN example's generator (``dcgan/main.py``), with its 32x32 variant one stage shorter."""

    def __init__(self, nz: int, ngf: int, nc: int, image_size: int = 64):
        super().__init__()
        multipliers = [8, 4, 2, 1] if image_size == 64 else [4, 2, 1]
        layers = [nn.ConvTranspose2d(nz, ngf * multipliers[0], 4, 1, 0, bias=False)]
        layers += [nn.BatchNorm2d(ngf * multipliers[0]), nn.ReLU(True)]
        for m_in, m_out in zip(multipliers, multipliers[1:]):
            layers += [nn.ConvTranspose2d(ngf * m_in, ngf * m_out, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * m_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    """The example's discriminator: strided convolutions, BatchNorm, LeakyReLU(0.2), a Sigmoid at the end."""

    def __init__(self, ndf: int, nc: int, image_size: int = 64):
        super().__init__()
        multipliers = [1, 2, 4, 8] if image_size == 64 else [1, 2, 4]
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for m_in, m_out in zip(multipliers, multipliers[1:]):
            layers += [nn.Conv2d(ndf * m_in, ndf * m_out, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * m_out), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Conv2d(ndf * multipliers[-1], 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def _trained_like(net: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """Random weights, and BatchNorm running statistics moved off their initial values, as training leaves them."""
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(inputs)
    return net.eval()


@pytest.mark.parametrize(
    "image_size, nz, ngf, nc",
    [(64, 16, 4, 3), (32, 10, 6, 1)],
    ids=["64x64-rgb", "32x32-gray"],
)
def test_imported_networks_give_the_examples_outputs(tmp_path, capsys, image_size, nz, ngf, nc):
    torch.manual_seed(0)
    netG = _trained_like(Generator(nz, ngf, nc, image_size), torch.randn(8, nz, 1, 1))
    netD = _trained_like(Discriminator(ngf, nc, image_size), torch.rand(8, nc, image_size, image_size) * 2 - 1)
    torch.save(netG.state_dict(), tmp_path / "netG.pth")
    torch.save(netD.state_dict(), tmp_path / "netD.pth")

    out = tmp_path / "imported"
    assert main(["import-dcgan", str(tmp_path / "netG.pth"), "--netd", str(tmp_path / "netD.pth"), "--out", str(out)]) == 0
    assert f"into {out}" in capsys.readouterr().out
    model = GANModule.from_pretrained(out)
    assert (model.hparams.image_size, model.hparams.latent_dim, model.hparams.width, model.hparams.channels) == (
        image_size, nz, ngf, nc
    )

    z = torch.randn(5, nz, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.generator(z), netG(z), rtol=0, atol=1e-6)
        # sample(n, seed) draws torch.randn(n, nz) on the CPU: the example's latents for the same seed.
        seeded = torch.randn(6, nz, 1, 1, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(model.sample(6, seed=3), netG(seeded), rtol=0, atol=1e-6)
        images = torch.rand(4, nc, image_size, image_size) * 2 - 1
        # The example's discriminator ends in a Sigmoid; ours returns the logit before it.
        torch.testing.assert_close(torch.sigmoid(model.discriminator(images)), netD(images).view(-1), rtol=0, atol=1e-6)
    assert "imported from netG.pth" in (out / "README.md").read_text()


def test_a_generator_alone_and_a_dataparallel_prefix(tmp_path):
    torch.manual_seed(1)
    netG = _trained_like(Generator(8, 4, 3, 32), torch.randn(4, 8, 1, 1))
    torch.save({f"module.{k}": v for k, v in netG.state_dict().items()}, tmp_path / "netG.pth")  # nn.DataParallel
    assert main(["import-dcgan", str(tmp_path / "netG.pth"), "--out", str(tmp_path / "g"), "--no-samples"]) == 0
    model = GANModule.from_pretrained(tmp_path / "g")
    z = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.generator(z), netG(z[:, :, None, None]), rtol=0, atol=1e-6)


def test_what_cannot_be_imported_is_refused_with_the_reason(tmp_path, capsys):
    torch.save(Generator(8, 4, 3, 32).state_dict(), tmp_path / "netG.pth")
    torch.save(Discriminator(6, 3, 32).state_dict(), tmp_path / "netD.pth")
    assert main(["import-dcgan", str(tmp_path / "netG.pth"), "--netd", str(tmp_path / "netD.pth"), "--out", str(tmp_path / "x")]) == 1
    assert "disagree on width (4 vs 6)" in capsys.readouterr().err and not (tmp_path / "x").exists()

    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "other.pth")
    assert main(["import-dcgan", str(tmp_path / "other.pth"), "--out", str(tmp_path / "y")]) == 1
    assert "expected the PyTorch DCGAN example's keys" in capsys.readouterr().err

    class Hook:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"main.0.weight": Hook()}, tmp_path / "pickle.pth")  # weights_only=True refuses to run it
    assert main(["import-dcgan", str(tmp_path / "pickle.pth"), "--out", str(tmp_path / "z")]) == 1
    captured = capsys.readouterr()
    assert "unpickled!" not in captured.out and "error:" in captured.err
