"""Train the digits evaluator's classifier on the built-in MNIST training digits and save its float16 weights.

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)`` and a fixed thread count (results depend
on it), so the same command on the same machine writes the same file. Only the **training split** (4,000 digits,
:func:`lightning_gen.data.load_digits`) is trained on; accuracy is reported on the 1,000 test digits at every size
the data module offers (28 native, 32 padded, 16/24/48/64 padded and resized), read through the evaluator's own
preprocessing (:func:`~lightning_gen.metrics.digits_classifier.prepare_digits_images`).

Augmentation, drawn per image from one seeded generator: a random affine map (rotation up to 12 degrees, scale
0.9-1.1, shear up to 0.15, shift up to 2 px), then each batch goes through one of the data module's sizes and
back (pad to 32, antialiased resize, uint8 rounding, the evaluator's preprocessing), so the classifier knows the
resampling it meets in evaluation. Outlier exposure (Hendrycks et al., 2019) pushes the logits towards uniform on
pixel noise, smooth noise and blends of two digits, so that validity (a confident class) is low for images that
are not one clean digit.

After retraining, put the printed sha256 into ``DIGITS_CLASSIFIER_SHA256``, the printed accuracies into
``DIGITS_CLASSIFIER_ACCURACY`` and bump ``DIGITS_CLASSIFIER_NAME`` (``lightning_gen/metrics/digits_classifier.py``).

Run (the defaults wrote the shipped file)::

    nice -n 10 .venv/bin/python tools/train_digits_classifier.py --out lightning_gen/metrics/weights/digits_classifier.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lightning_gen._files import sha256_file
from lightning_gen.data.digits import load_digits, prepare_digits
from lightning_gen.metrics.digits_classifier import (
    DIGITS_CLASSIFIER_NAME,
    DIGITS_VALIDITY_THRESHOLD,
    DigitsClassifier,
    load_digits_classifier,
    prepare_digits_images,
)

SIZES = (28, 32, 16, 64, 24, 48)  # the sizes a training batch passes through, in turn
REPORT_SIZES = (28, 32, 16, 24, 48, 64)
OUTLIER_WEIGHT = 0.5  # weight of the outlier-exposure term; one outlier per four digits


def random_affine(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Digits (N, 1, 28, 28) in [0, 1] under a random small rotation, scale, shear and shift (bilinear)."""
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-12, 12) * math.pi / 180
    scale = uniform(0.9, 1.1)
    shear = uniform(-0.15, 0.15)
    shift = uniform(-2, 2), uniform(-2, 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin + shear * cos
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos + shear * sin
    theta[:, 0, 2], theta[:, 1, 2] = shift[0] / 14, shift[1] / 14  # grid units: 14 px per unit at 28 px
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def through_size(images01: torch.Tensor, size: int) -> torch.Tensor:
    """Digits in [0, 1] (N, 1, 28, 28) the way the data module serves them at ``size`` and the evaluator reads
    them back: quantized to uint8, padded / resized, then :func:`prepare_digits_images`."""
    uint8 = (images01.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0]
    return prepare_digits_images(prepare_digits(uint8, image_size=size))


def outliers(digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Non-digits in [-1, 1], in equal parts: pixel noise, smooth noise and blends of two digits."""
    n = digits.shape[0] // 3
    pixel = torch.rand(n, 1, 28, 28, generator=generator) * 2 - 1
    coarse = torch.rand(n, 1, 7, 7, generator=generator) * 2 - 1
    smooth = F.interpolate(coarse, size=(28, 28), mode="bilinear", align_corners=False)
    blends = torch.maximum(digits[:n], digits[n : 2 * n].flip(-1))  # two overlaid strokes, one mirrored
    return torch.cat([pixel, smooth, blends])


@torch.no_grad()
def evaluate(network: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and validity (max softmax >= threshold) per data-module size on held-out uint8 digits (N, 28, 28)."""
    report = {}
    for size in REPORT_SIZES:  # validity at the evaluator's threshold
        inputs = prepare_digits_images(prepare_digits(images, image_size=size))
        probabilities = torch.cat([network(batch)[1].softmax(1) for batch in inputs.split(500)])
        confidence, predicted = probabilities.max(1)
        report[f"{size}px"] = {
            "accuracy": round((predicted == labels).float().mean().item(), 4),
            "validity": round((confidence >= DIGITS_VALIDITY_THRESHOLD).float().mean().item(), 4),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it)")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    train_images, train_labels = load_digits("train")
    test_images, test_labels = load_digits("test")
    train01 = train_images[:, None].float() / 255

    network = DigitsClassifier()
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(train_labels) // args.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15
    )
    generator = torch.Generator().manual_seed(0)
    step = 0
    for epoch in range(args.epochs):
        network.train()
        order = torch.randperm(len(train_labels), generator=generator)
        running = 0.0
        for index in range(steps_per_epoch):
            batch = order[index * args.batch_size : (index + 1) * args.batch_size]
            digits = through_size(random_affine(train01[batch], generator), SIZES[step % len(SIZES)])
            step += 1
            negatives = outliers(digits, generator)
            _, logits = network(torch.cat([digits, negatives]))
            loss = F.cross_entropy(logits[: len(batch)], train_labels[batch], label_smoothing=0.05)
            loss = loss - OUTLIER_WEIGHT * logits[len(batch) :].log_softmax(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
        network.eval()
        accuracy = evaluate(network, test_images, test_labels)["28px"]["accuracy"]
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {running / steps_per_epoch:.4f}, held-out accuracy 28px "
            f"{accuracy:.4f} ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {
        key: (tensor.half() if tensor.is_floating_point() else tensor).detach().contiguous()
        for key, tensor in network.state_dict().items()
    }
    # One metadata entry (safetensors writes several in a varying order and the sha256 must not vary); --out is
    # left out so the bytes do not depend on where the file is written.
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    description = {"name": DIGITS_CLASSIFIER_NAME, "trained_on": "built-in MNIST digits, train split (4,000)",
                   "trained_with": settings}  # fmt: skip
    save_file(state, str(args.out), metadata={"lightning_gen": json.dumps(description, sort_keys=True)})
    shipped = load_digits_classifier(args.out, expected_sha256=None)
    report = evaluate(shipped, test_images, test_labels)
    generator = torch.Generator().manual_seed(1)
    held_out = prepare_digits_images(test_images[:, None])
    with torch.no_grad():
        outlier_validity = {
            kind: round((shipped(images)[1].softmax(1).amax(1) >= DIGITS_VALIDITY_THRESHOLD).float().mean().item(), 4)
            for kind, images in zip(("pixel_noise", "smooth_noise", "blends"), outliers(held_out[:999], generator).chunk(3))
        }
    print(json.dumps({"held_out": report, f"outlier_validity_at_{DIGITS_VALIDITY_THRESHOLD}": outlier_validity}, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), sha256 {sha256_file(args.out)}")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
