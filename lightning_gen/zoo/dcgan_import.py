"""Bring networks trained with the PyTorch DCGAN example (``pytorch/examples``, ``dcgan/main.py``) into lightning-gen.

What it is for: ``lightning-gen zoo import-dcgan netG.pth [--netd netD.pth] --out DIR`` turns the
state dicts that example saves (``torch.save(netG.state_dict(), ...)``) into a Hub folder that
``GANModule.from_pretrained(DIR)`` loads and that samples the same images for the same latents. What
it is not: a general converter; only the example's ``nn.Sequential`` stacks are recognised.

The mapping. The example's networks are ``self.main = nn.Sequential(...)``, so their keys are
``main.<index>.<param>`` (``module.main...`` when saved from ``nn.DataParallel``). Sizes are read
from the weights: ``nz``, ``ngf``, ``nc`` from the first and last ``ConvTranspose2d``, ``ndf`` from
the first ``Conv2d``, and the image size from the number of stages (five transposed convolutions
make 64x64, the example's layout; four make 32x32; any size 16-256 whose widths follow
``ngf * 2**k`` capped at 8x).

============================================  ===============================================
PyTorch DCGAN example                         lightning-gen
============================================  ===============================================
``Generator.main.<i>.*``                      ``GANModule.generator.net.<i>.*`` (same layers)
input ``z`` of shape (B, nz, 1, 1)            (B, nz) or (B, nz, 1, 1); ``sample(n, seed)`` draws
                                              ``torch.randn(n, nz)``: the same numbers
``Discriminator.main.<i>.*``, i < last        ``GANModule.discriminator.features.<i>.*``
last ``Conv2d(ndf*k, 1, 4, 1, 0)``            ``discriminator.head`` (its bias set to 0)
first ``Conv2d(nc, ndf, 4, 2, 1, bias=False)``  ``features.0`` (its bias set to 0)
``Sigmoid`` output: a probability             no sigmoid: a logit. ``torch.sigmoid(d(x))`` equals
                                              the example's ``netD(x).view(-1)``; ``loss="bce"``
                                              (BCE with logits) is the example's ``BCELoss``.
============================================  ===============================================

Compare in eval mode: the example never calls ``netG.eval()``, so its progress images use batch
statistics, while ``sample()`` uses the running statistics the state dict holds.

Example:
    >>> import tempfile, torch
    >>> from torch import nn
    >>> netG = nn.Sequential(nn.ConvTranspose2d(8, 16, 4, 1, 0, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),
    ...     nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(True),
    ...     nn.ConvTranspose2d(8, 3, 4, 2, 1, bias=False), nn.Tanh())
    >>> state = {f"main.{k}": v for k, v in netG.state_dict().items()}
    >>> model = gan_from_dcgan_example(state)
    >>> model.hparams.image_size, model.hparams.latent_dim, model.hparams.width
    (16, 8, 8)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from lightning_gen.gan import GANModule
from lightning_gen.hub import WeightsMismatchError
from lightning_gen.networks._layout import SUPPORTED_IMAGE_SIZES, feature_widths

EXAMPLE_URL = "https://github.com/pytorch/examples/tree/main/dcgan"


def _main_layers(state: Mapping[str, Tensor], what: str) -> dict[int, dict[str, Tensor]]:
    """``{index: {param: tensor}}`` of the example's ``main`` Sequential (a DataParallel prefix is dropped)."""
    layers: dict[int, dict[str, Tensor]] = {}
    for key, tensor in state.items():
        parts = key.removeprefix("module.").split(".")
        if len(parts) != 3 or parts[0] != "main" or not parts[1].isdigit() or not isinstance(tensor, Tensor):
            raise WeightsMismatchError(
                f"{what} has key {key!r}; expected the PyTorch DCGAN example's keys 'main.<index>.<param>' "
                "(the state_dict of its Generator or Discriminator)."
            )
        layers.setdefault(int(parts[1]), {})[parts[2]] = tensor
    if not layers:
        raise WeightsMismatchError(f"{what} is empty; expected the state_dict of the DCGAN example's network.")
    return layers


def _conv_indices(layers: Mapping[int, Mapping[str, Tensor]]) -> list[int]:
    return sorted(i for i, params in layers.items() if params.get("weight") is not None and params["weight"].ndim == 4)


def _image_size(stages: int, what: str) -> int:
    image_size = 4 * 2 ** (stages - 1)
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise WeightsMismatchError(
            f"{what} has {stages} convolution stages, which make {image_size}x{image_size} images; lightning-gen's "
            f"DCGAN supports {SUPPORTED_IMAGE_SIZES}."
        )
    return image_size


def _check_widths(found: list[int], image_size: int, base: int, what: str) -> None:
    expected = feature_widths(image_size, base)
    if found != expected:
        raise WeightsMismatchError(
            f"{what} has feature widths {found}; the DCGAN layout for {image_size}x{image_size} with width {base} "
            f"is {expected}. Only the example's stacks (widths doubling per stage, at most 8x) can be imported."
        )


def generator_state(state: Mapping[str, Tensor]) -> tuple[dict[str, int], dict[str, Tensor]]:
    """Sizes (``image_size``, ``channels``, ``latent_dim``, ``width``) and ``DCGANGenerator`` keys of a ``netG``."""
    layers = _main_layers(state, "the generator state dict")
    convs = _conv_indices(layers)
    image_size = _image_size(len(convs), "The generator")
    first, last = layers[convs[0]]["weight"], layers[convs[-1]]["weight"]  # ConvTranspose2d weights are (in, out, k, k)
    sizes = {"image_size": image_size, "channels": last.shape[1], "latent_dim": first.shape[0], "width": last.shape[0]}
    _check_widths([layers[i]["weight"].shape[1] for i in convs[:-1]], image_size, sizes["width"], "The generator")
    # The layer indices are the same in both stacks (ConvT, BN, ReLU per stage; ConvT, Tanh at the end).
    return sizes, {f"net.{i}.{p}": t for i, params in layers.items() for p, t in params.items()}


def discriminator_state(state: Mapping[str, Tensor]) -> tuple[dict[str, int], dict[str, Tensor]]:
    """Sizes and ``DCGANDiscriminator`` keys of an example ``netD`` (its last convolution becomes ``head``)."""
    layers = _main_layers(state, "the discriminator state dict")
    convs = _conv_indices(layers)
    image_size = _image_size(len(convs), "The discriminator")
    first = layers[convs[0]]["weight"]  # Conv2d weights are (out, in, k, k)
    sizes = {"image_size": image_size, "channels": first.shape[1], "width": first.shape[0]}
    widths = [layers[i]["weight"].shape[0] for i in convs[:-1]][::-1]  # deepest first, as feature_widths lists them
    _check_widths(widths, image_size, sizes["width"], "The discriminator")
    head = convs[-1]
    mapped = {f"features.{i}.{p}": t for i, params in layers.items() if i != head for p, t in params.items()}
    mapped.update({f"head.{p}": t for p, t in layers[head].items()})
    # The example's first and last convolutions have no bias; ours do, and a zero bias is the same function.
    mapped.setdefault(f"features.{convs[0]}.bias", torch.zeros(first.shape[0], dtype=first.dtype))
    mapped.setdefault("head.bias", torch.zeros(1, dtype=first.dtype))
    return sizes, mapped


def _load_strict(network: torch.nn.Module, state: dict[str, Tensor], what: str) -> None:
    result = network.load_state_dict(state, strict=False)
    shapes = [k for k, v in state.items() if k in network.state_dict() and network.state_dict()[k].shape != v.shape]
    if result.missing_keys or result.unexpected_keys or shapes:
        raise WeightsMismatchError(
            f"The {what} does not map onto lightning-gen's DCGAN (missing: {result.missing_keys}; unexpected: "
            f"{result.unexpected_keys}; other shapes: {shapes}). Is it the PyTorch DCGAN example's network?"
        )


def gan_from_dcgan_example(
    generator: Mapping[str, Tensor], discriminator: Mapping[str, Tensor] | None = None
) -> GANModule:
    """A ``GANModule`` holding the example's weights (the discriminator stays freshly initialised without one).

    Raises:
        WeightsMismatchError: the state dicts are not the example's, or the two networks disagree.
    """
    sizes, g_state = generator_state(generator)
    d_state = None
    if discriminator is not None:
        d_sizes, d_state = discriminator_state(discriminator)
        for key in ("image_size", "channels", "width"):
            if d_sizes[key] != sizes[key]:
                hint = " GANModule has one `width` for both networks: import the generator alone."
                hint = hint if key == "width" else ""
                raise WeightsMismatchError(
                    f"The generator and discriminator disagree on {key} ({sizes[key]} vs {d_sizes[key]}).{hint}"
                )
    # The example's training settings: BCE, Adam(lr=2e-4, betas=(0.5, 0.999)), BatchNorm in D; no EMA.
    model = GANModule(**sizes, loss="bce", lr_g=2e-4, lr_d=2e-4, d_norm="batch")
    with torch.no_grad():
        _load_strict(model.generator, g_state, "generator")
        if d_state is not None:
            _load_strict(model.discriminator, d_state, "discriminator")
    return model.eval()


def import_dcgan(
    generator_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    discriminator_path: str | os.PathLike | None = None,
    *,
    dataset: str | None = None,
    license: str = "other",
    samples: bool = True,
) -> Path:
    """Convert ``netG.pth`` (and ``netD.pth``) saved by the PyTorch DCGAN example into a Hub folder.

    The files are read with ``torch.load(weights_only=True)``: nothing in them is unpickled as code.
    Returns the folder; ``GANModule.from_pretrained(folder)`` loads it.
    """
    from lightning_gen.hub import CardInfo

    def read(path: str | os.PathLike) -> Mapping[str, Tensor]:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise WeightsMismatchError(f"{os.fspath(path)!r} holds a {type(state).__name__}, not a state dict.")
        return state

    model = gan_from_dcgan_example(read(generator_path), read(discriminator_path) if discriminator_path else None)
    card = CardInfo(
        model_name=f"DCGAN imported from {Path(generator_path).name}",
        description=(
            f"A generator trained with the PyTorch DCGAN example ({EXAMPLE_URL}) and converted by "
            "`lightning-gen zoo import-dcgan`; it samples the same images as the original `netG` in eval mode "
            "for the same latents. The discriminator outputs logits (the example's ends in a Sigmoid)."
        ),
        dataset=dataset,
        license=license,
    )
    out = Path(out_dir)
    model.save_pretrained(
        out, model_card_kwargs=card.as_kwargs(), include_discriminator=discriminator_path is not None, samples=samples
    )
    return out
