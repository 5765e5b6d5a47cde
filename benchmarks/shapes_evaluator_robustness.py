"""How the shapes classifier reads real shapes under mild degradations, and the zoo DCGAN's samples with and without blur.

The evaluator's validity and shape TV are only as fair as the classifier is to images that are still plainly one
shape. This perturbs 1,500 real images (``ShapesDataset(seed=7)``, the default three kinds, 32 px RGB) after the
evaluator's preprocessing (values in [-1, 1]) and prints, per perturbation, validity and the predicted shape shares
for each true kind; then it does the same for 1,000 samples of ``dcgan-shapes32`` raw and blurred, to see whether
the generator's shape distribution is a reading of pixel artefacts (it would move with blur) or of the shapes.

It also prints the validity of clean real images at the sizes and channel counts the data module offers (the
ceiling a generator can reach). ``--weights`` scores a candidate classifier written by
``tools/train_shapes_classifier.py`` instead of the shipped one.

    python benchmarks/shapes_evaluator_robustness.py            # about 40 s on one CPU core
    python benchmarks/shapes_evaluator_robustness.py --weights /tmp/candidate.safetensors
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from lightning_gen import zoo
from lightning_gen._images import to_uint8
from lightning_gen.data.shapes import DEFAULT_SHAPES, SHAPE_KINDS, ShapesDataset
from lightning_gen.metrics.shapes_classifier import VALIDITY_THRESHOLD, load_shapes_classifier, prepare_shapes_images


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    offsets = torch.arange(-3, 4, dtype=images.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(images.shape[1], 1, 1, 1)
    images = F.conv2d(F.pad(images, (3, 3, 0, 0), mode="replicate"), kernel.view(-1, 1, 1, 7), groups=images.shape[1])
    return F.conv2d(F.pad(images, (0, 0, 3, 3), mode="replicate"), kernel.view(-1, 1, 7, 1), groups=images.shape[1])


def resample(images: torch.Tensor, side: int) -> torch.Tensor:
    small = F.interpolate(images, size=side, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=images.shape[-1], mode="bilinear", align_corners=False)


@torch.no_grad()
def read(network: torch.nn.Module, images: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Validity, predicted shape per image, and the images' shape confidence."""
    _, logits = network(images)
    shape, colour = logits["shape"].softmax(1), logits["colour"].softmax(1)
    valid = (shape.amax(1) >= VALIDITY_THRESHOLD) & (colour.amax(1) >= VALIDITY_THRESHOLD)
    return valid.float().mean().item(), shape.argmax(1), shape.amax(1)


def shares(predicted: torch.Tensor) -> str:
    counts = torch.bincount(predicted, minlength=len(SHAPE_KINDS)).float() / max(len(predicted), 1)
    return " / ".join(f"{share:.2f}" for share in counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a classifier to score instead of the shipped one (no sha256 pin)")
    args = parser.parse_args()
    torch.manual_seed(0)
    network = (load_shapes_classifier(args.weights, expected_sha256=None) if args.weights else load_shapes_classifier()).eval()
    images, labels = ShapesDataset(1500, image_size=32, seed=7).to_tensors()
    clean = prepare_shapes_images(images)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    perturbations = {
        "none": clean,
        **{f"Gaussian blur, sigma {s} px": gaussian_blur(clean, s) for s in (0.7, 1.0, 1.4)},
        **{f"pixel noise, std {s} ({round(s * 127.5)}/255)": clean + s * noise for s in (0.05, 0.1, 0.2)},
        **{f"down to {side} px and back up": resample(clean, side) for side in (24, 16)},
    }
    kinds = " / ".join(SHAPE_KINDS)
    print(f"Real images (1,500, seed 7): predicted shares {kinds} per true kind\n")
    print("| perturbation | validity | " + " | ".join(f"true {kind}" for kind in DEFAULT_SHAPES) + " |")
    print("|---|---|" + "---|" * len(DEFAULT_SHAPES))
    for name, perturbed in perturbations.items():
        validity, predicted, _ = read(network, perturbed)
        columns = [shares(predicted[labels == k]) for k in range(len(DEFAULT_SHAPES))]
        print(f"| {name} | {validity:.3f} | " + " | ".join(columns) + " |")

    print("\nClean real images (1,000, seed 7) at the data module's sizes: validity\n")
    print("| 32 px RGB | 64 px RGB | 16 px RGB | 32 px grayscale | 16 px grayscale |")
    print("|---|---|---|---|---|")
    ceilings = []
    for size, channels in ((32, 3), (64, 3), (16, 3), (32, 1), (16, 1)):
        real, _ = ShapesDataset(1000, image_size=size, channels=channels, seed=7).to_tensors()
        with torch.no_grad():
            _, logits = network(prepare_shapes_images(real))
        confident = logits["shape"].softmax(1).amax(1) >= VALIDITY_THRESHOLD
        if channels == 3:  # colour is not judged on grayscale images
            confident &= logits["colour"].softmax(1).amax(1) >= VALIDITY_THRESHOLD
        ceilings.append(f"{confident.float().mean().item():.3f}")
    print("| " + " | ".join(ceilings) + " |")

    model = zoo.load("dcgan-shapes32")
    samples = prepare_shapes_images(to_uint8(model.sample(1000, seed=0)))
    print(f"\ndcgan-shapes32, 1,000 samples (seed 0): predicted shares {kinds}\n")
    print("| blur | validity | confident shape | shares |")
    print("|---|---|---|---|")
    for sigma in (0.0, 0.7, 1.0):
        validity, predicted, confidence = read(network, gaussian_blur(samples, sigma) if sigma else samples)
        confident = (confidence >= VALIDITY_THRESHOLD).float().mean().item()
        print(f"| {sigma or 'none'} | {validity:.3f} | {confident:.3f} | {shares(predicted)} |")


if __name__ == "__main__":
    main()
