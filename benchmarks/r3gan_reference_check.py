"""Check ``lightning_gen.networks.r3gan`` against the authors' networks (brownvc/R3GAN, ``R3GAN/Networks.py``).

Not a test: it needs a checkout of the authors' repository, which the library neither ships nor downloads.
It builds both implementations, copies one set of random weights into both (every parameter, the zero-initialised
ones included), and reports

* the parameter counts of the paper's CIFAR-10 preset (``train.py --preset=CIFAR10``), unconditional and with
  10 classes, from both codes;
* the largest difference between the two generators' images and the two discriminators' logits on a small
  config with unequal widths and blocks, unconditional and conditional;
* the standard deviation of each initialised layer in both codes.

The authors' code runs on the CPU with its reference resamplers and activation (their CUDA kernels are not
needed). Their ``dnnlib`` imports ``requests`` and their ``conv2d_gradfix`` imports ``pkg_resources``, neither of
which the check uses, so empty stand-ins are put on the path when they are missing.

Usage::

    git clone https://github.com/brownvc/R3GAN /tmp/R3GAN   # or any copy of it
    python benchmarks/r3gan_reference_check.py /tmp/R3GAN
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

from lightning_gen.networks.r3gan import R3GANDiscriminator, R3GANGenerator, r3gan_cifar32


def _import_reference(root: Path):
    stubs = Path(tempfile.mkdtemp(prefix="r3gan_stubs_"))
    if importlib.util.find_spec("requests") is None:
        (stubs / "requests.py").write_text("")
    if importlib.util.find_spec("pkg_resources") is None:
        (stubs / "pkg_resources.py").write_text("from packaging.version import parse as parse_version\n")
    sys.path[:0] = [str(stubs), str(root)]
    import R3GAN.FusedOperators as fused
    import R3GAN.Networks as networks
    import R3GAN.Resamplers as resamplers

    networks.InterpolativeUpsampler = resamplers.InterpolativeUpsamplerReference
    networks.InterpolativeDownsampler = resamplers.InterpolativeDownsamplerReference
    networks.BiasedActivation = fused.BiasedActivationReference
    return networks


_RENAMES = [  # the authors' parameter names -> ours
    ("MainLayers.", "stages."), (".Layers.", "."),
    ("LinearLayer1.Layer", "expand"), ("LinearLayer2.Layer", "conv"), ("LinearLayer3.Layer", "project"),
    ("NonLinearity1.Bias", "act1.bias"), ("NonLinearity2.Bias", "act2.bias"),
    ("LinearLayer.Layer", "linear"), ("LinearLayer", "linear"), ("Basis", "basis"),
    ("AggregationLayer.Layer", "to_image"), ("ExtractionLayer.Layer", "from_image"),
]  # fmt: skip


def _our_name(name: str, embedding: str) -> str:
    if name == "EmbeddingLayer.weight":
        return embedding
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return name


def _copy_random_weights(theirs: torch.nn.Module, ours: torch.nn.Module, embedding: str) -> None:
    state = {}
    for name, value in theirs.state_dict().items():
        if name.endswith("Resampler.Kernel"):  # a constant of the filter; ours is not in the state dict
            continue
        value.copy_(torch.randn_like(value) * 0.2)
        # A bias-free linear layer on one-hot labels is our embedding table, transposed.
        state[_our_name(name, embedding)] = value.T if name == "EmbeddingLayer.weight" else value
    ours.load_state_dict(state)  # strict: every name must line up


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("r3gan_root", type=Path, help="a checkout of github.com/brownvc/R3GAN")
    args = parser.parse_args(argv)
    reference = _import_reference(args.r3gan_root)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731

    widths, blocks, cardinality = [768] * 4, [2] * 4, [96] * 4  # train.py, preset CIFAR10
    for classes in (None, 10):
        g = reference.Generator(64, widths, cardinality, blocks, 2, ConditionDimension=classes, ConditionEmbeddingDimension=64 if classes else 0)
        d = reference.Discriminator(widths[::-1], cardinality[::-1], blocks[::-1], 2, ConditionDimension=classes, ConditionEmbeddingDimension=768 if classes else 0)
        with torch.device("meta"):
            ours = r3gan_cifar32(num_classes=classes or 0)
        print(f"cifar32 num_classes={classes or 0}: G {count(g):,} (authors) {count(ours.generator):,} (ours); D {count(d):,} (authors) {count(ours.discriminator):,} (ours)")

    torch.manual_seed(0)
    widths, blocks, cardinality = [64, 48, 32], [2, 1, 2], [8, 6, 4]  # 16 channels per group at expansion 2
    for classes in (None, 5):
        g = reference.Generator(16, widths, cardinality, blocks, 2, ConditionDimension=classes, ConditionEmbeddingDimension=16 if classes else 0)
        d = reference.Discriminator(widths[::-1], cardinality[::-1], blocks[::-1], 2, ConditionDimension=classes, ConditionEmbeddingDimension=widths[0] if classes else 0)
        our_g = R3GANGenerator(16, 3, 16, num_classes=classes or 0, widths=widths, blocks_per_stage=blocks, embedding_dim=16 if classes else None)
        our_d = R3GANDiscriminator(16, 3, num_classes=classes or 0, widths=widths, blocks_per_stage=blocks)
        _copy_random_weights(g, our_g, "label_embedding.weight")
        _copy_random_weights(d, our_d, "label_projection.weight")
        z, labels = torch.randn(4, 16), torch.arange(4) % (classes or 1)
        one_hot = torch.nn.functional.one_hot(labels, classes).float() if classes else None
        with torch.no_grad():
            images, our_images = g(z, one_hot), our_g(z, labels if classes else None)
            logits, our_logits = d(images, one_hot), our_d(images, labels if classes else None)
        print(
            f"16 px, widths {widths}, blocks {blocks}, num_classes={classes or 0}: "
            f"G max |diff| {(images - our_images).abs().max():.3g} of max |image| {images.abs().max():.3g}; "
            f"D max |diff| {(logits - our_logits).abs().max():.3g} of max |logit| {logits.abs().max():.3g}"
        )

    torch.manual_seed(0)
    g, ours = reference.Generator(16, [768] * 3, [96] * 3, [2] * 3, 2), R3GANGenerator(16, 3, 16, widths=768, blocks_per_stage=2)
    our_state = ours.state_dict()
    print("init std, authors vs ours:")
    for name, value in list(g.state_dict().items())[:9]:
        print(f"  {_our_name(name, ''):28s} {value.std():.5f} {our_state[_our_name(name, '')].std():.5f}")


if __name__ == "__main__":
    main()
