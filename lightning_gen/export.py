"""Exporting the sampling generator for deployment: ONNX and TorchScript, with a dynamic batch axis.

What this module is for: :func:`export_onnx`, :func:`export_torchscript` and ``lightning-gen zoo export
--onnx/--torchscript``. The exported program maps latents ``z`` (B, latent_dim) float32 (and, for
class-conditional models, ``labels`` (B,) int64) to images (B, C, H, W) float32 in [-1, 1], in eval mode, from
the network ``sample()`` uses: a ``GANModule``'s EMA generator when it has one, a ``VAE``'s decoder with its
output activation, or any generator ``nn.Module`` you pass. Latents are drawn by the caller (``np.random`` /
``torch.randn``; :func:`lightning_gen.latents.truncated_normal` for truncation). What it is not: a runtime;
run the files with onnxruntime or ``torch.jit.load``.

ONNX uses torch's TorchScript-based exporter (``dynamo=False``): the export-based one needs ``onnxscript``,
which lightning-gen does not require. torch marks both ``torch.jit`` and that exporter deprecated; their
deprecation warnings are silenced here because the user asked for exactly these formats.

Example:
    >>> import tempfile, torch
    >>> from lightning_gen import GANModule
    >>> model = GANModule(image_size=16, channels=1, latent_dim=8, width=4)
    >>> path = export_torchscript(model, tempfile.mkdtemp() + "/generator.torchscript.pt")
    >>> z = torch.randn(3, 8)
    >>> torch.equal(torch.jit.load(str(path))(z), model.eval()(z))
    True
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: File names ``lightning-gen zoo export`` writes next to a Hub folder's weights.
ONNX_NAME = "generator.onnx"
TORCHSCRIPT_NAME = "generator.torchscript.pt"
INPUT_NAMES = ("z", "labels")
OUTPUT_NAME = "images"
DEFAULT_OPSET = 17


class SamplingGenerator(nn.Module):
    """The network behind ``sample()``, as one module ``forward(z[, labels]) -> images`` in [-1, 1].

    Args:
        generator: maps ``z`` (and labels when ``num_classes``) to images.
        latent_dim: size of ``z``.
        num_classes: > 0 for a class-conditional generator (``forward`` then takes labels).
        output: ``"identity"`` (the generator ends in tanh, as GAN generators do), ``"tanh"`` or
            ``"sigmoid"`` (mapped to [-1, 1]): the VAE decoder's raw output goes through its likelihood's mean.
    """

    OUTPUTS = ("identity", "tanh", "sigmoid")

    def __init__(self, generator: nn.Module, latent_dim: int, num_classes: int = 0, output: str = "identity"):
        super().__init__()
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {self.OUTPUTS}, got {output!r}.")
        self.generator, self.latent_dim, self.num_classes, self.output = generator, int(latent_dim), int(num_classes), output

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        images = self.generator(z, labels) if self.num_classes else self.generator(z)
        images = images.float()
        if self.output == "tanh":
            return torch.tanh(images)
        if self.output == "sigmoid":
            return torch.sigmoid(images) * 2 - 1
        return images

    def example_inputs(self, batch: int = 2) -> tuple[Tensor, ...]:
        """Inputs to trace with (on the generator's device)."""
        device = next(self.generator.parameters()).device
        z = torch.randn(batch, self.latent_dim, generator=torch.Generator().manual_seed(0)).to(device)
        if not self.num_classes:
            return (z,)
        return z, (torch.arange(batch) % self.num_classes).to(device)


def sampling_generator(model: Any) -> SamplingGenerator:
    """The :class:`SamplingGenerator` of a ``GANModule``, a ``VAE`` or a generator ``nn.Module``.

    A plain module needs ``latent_dim`` (and ``num_classes`` when conditional) attributes, as
    :class:`~lightning_gen.networks.DCGANGenerator` has.
    """
    if isinstance(model, SamplingGenerator):
        return model
    if hasattr(model, "sampling_generator"):  # GANModule: the EMA copy when there is one
        return SamplingGenerator(model.sampling_generator, model.latent_dim, model.num_classes)
    if hasattr(model, "decoder") and hasattr(model, "encoder"):  # VAE: decode() = likelihood mean of the decoder
        output = "tanh" if model.hparams.likelihood == "gaussian" else "sigmoid"
        return SamplingGenerator(model.decoder, model.latent_dim, 0, output)
    latent_dim = getattr(model, "latent_dim", None)
    if not isinstance(model, nn.Module) or latent_dim is None:
        raise TypeError(
            f"Export takes a GANModule, a VAE or a generator nn.Module with a latent_dim attribute (and num_classes "
            f"when conditional), got {type(model).__name__}. Wrap other generators in "
            "lightning_gen.export.SamplingGenerator(generator, latent_dim, num_classes)."
        )
    return SamplingGenerator(model, latent_dim, int(getattr(model, "num_classes", 0) or 0))


class _evaluating:
    """Eval mode for a block, each submodule's own mode restored after (an export must record eval mode)."""

    def __init__(self, module: nn.Module):
        self.module, self.modes = module, {m: m.training for m in module.modules()}

    def __enter__(self) -> nn.Module:
        return self.module.eval()

    def __exit__(self, *exc: Any) -> None:
        for module, mode in self.modes.items():
            module.training = mode


def export_onnx(model: Any, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET) -> Path:
    """Write the sampling generator as ONNX with a dynamic batch axis; returns the path.

    Inputs ``z`` (batch, latent_dim) float32 and, for conditional models, ``labels`` (batch,) int64; output
    ``images`` (batch, C, H, W) float32 in [-1, 1].

    Args:
        model: a ``GANModule``, ``VAE``, generator ``nn.Module`` or :class:`SamplingGenerator`.
        path: the ``.onnx`` file to write (parent folders are created).
        opset: ONNX opset version.
    """
    wrapper = sampling_generator(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = wrapper.example_inputs()
    names = list(INPUT_NAMES[: len(inputs)])
    dynamic = {name: {0: "batch"} for name in [*names, OUTPUT_NAME]}
    with _evaluating(wrapper), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper, inputs, str(path), input_names=names, output_names=[OUTPUT_NAME], dynamic_axes=dynamic,
            opset_version=opset, dynamo=False,
        )
    return path


def export_torchscript(model: Any, path: str | os.PathLike) -> Path:
    """Write the sampling generator as a traced TorchScript module (any batch size); returns the path.

    Load it with ``torch.jit.load(path)`` and call it with ``z`` (and ``labels`` for conditional models).
    Tracing records the eval-mode computation, which has no data-dependent control flow in the library's
    generators; a generator of your own with such branches needs ``torch.jit.script`` instead.
    """
    wrapper = sampling_generator(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _evaluating(wrapper), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, wrapper.example_inputs(), check_trace=False)
        traced.save(str(path))
    return path
