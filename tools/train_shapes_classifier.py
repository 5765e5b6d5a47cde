"""Train the shapes classifier behind FSD, factor coverage and validity (``lightning_gen/metrics/shapes.py``).

Deterministic on CPU: the images are drawn procedurally from fixed seeds (training seed 1000, held-out seed
1001, neither of them the data module's default 0), torch is seeded and the thread count is fixed, so the same
torch version and ``--threads`` write the same weights file (byte for byte). Each image is drawn at one of the
sizes the data module offers (16-64 px) and a fifth of them in grayscale, then brought to 32x32 RGB by the
evaluator's own preprocessing, so the classifier sees what the evaluator will feed it. The colour head does not
learn from grayscale images (the evaluator ignores colour for them).

The classifier also sees non-shapes (noise, shapes blurred beyond recognition, blends of two shapes) and is
trained to be unsure of their shape and colour (outlier exposure), so that validity, a confident shape and colour,
is low for images that are not one clean shape.

The weights are saved in float16 (about 270 KB); the held-out accuracies and validities printed at the end are
those of the saved file. After retraining, put the printed sha256 into ``SHAPES_CLASSIFIER_SHA256`` and bump
``SHAPES_CLASSIFIER_NAME`` (both in ``lightning_gen/metrics/shapes_classifier.py``).

Run (the defaults wrote the shipped file; 23 minutes on a 2-core machine shared with other jobs)::

    .venv/bin/python tools/train_shapes_classifier.py --out lightning_gen/metrics/weights/shapes_classifier.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lightning_gen._files import sha256_file
from lightning_gen.data.shapes import SHAPE_KINDS, ShapesDataset
from lightning_gen.metrics.shapes_classifier import (
    FACTORS,
    SHAPES_CLASSIFIER_NAME,
    ShapesClassifier,
    factor_labels,
    load_shapes_classifier,
    prepare_shapes_images,
)

SIZES = (16, 24, 32, 48, 64)  # the sizes drawn, in turn
GRAYSCALE_SHARE = 0.2
TRAIN_SEED, HELD_OUT_SEED = 1000, 1001
OUTLIER_WEIGHT = 0.5  # weight of the outlier-exposure term; 32 outliers per 128 shapes
VALIDITY_THRESHOLD = 0.9  # as in lightning_gen/metrics/shapes.py, for the report


def render(num_images: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Images (N, 3, 32, 32) float16 in [-1, 1] after the evaluator's preprocessing, labels, grayscale flags."""
    rng = np.random.default_rng(seed)
    sizes = np.array(SIZES)[np.arange(num_images) % len(SIZES)]
    grayscale = rng.random(num_images) < GRAYSCALE_SHARE
    images = torch.empty(num_images, 3, 32, 32, dtype=torch.float16)
    datasets = {}
    for index in range(num_images):
        key = (int(sizes[index]), 1 if grayscale[index] else 3)
        if key not in datasets:
            # Same seed for every (size, channels): image i has the same factors in all of them; each index is
            # drawn in one of them only.
            datasets[key] = ShapesDataset(num_images, image_size=key[0], channels=key[1], seed=seed, shapes=SHAPE_KINDS)
        image, _ = datasets[key][index]
        images[index] = prepare_shapes_images(image[None])[0].half()
    table = ShapesDataset(num_images, seed=seed, shapes=SHAPE_KINDS)
    rows = [factor_labels(table.factors(i)) for i in range(num_images)]
    labels = {name: torch.tensor([row[name] for row in rows]) for name in FACTORS}
    return images, labels, torch.from_numpy(grayscale)


def outliers(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images that are not one clean shape, in equal parts: pixel noise, smooth noise, shapes blurred beyond
    recognition (shrunk to 4-6 px and blown up again) and blends of two shapes."""
    n = images.shape[0] // 4
    pixel_noise = torch.rand(n, 3, 32, 32, generator=generator) * 2 - 1
    coarse = torch.rand(n, 3, 8, 8, generator=generator) * 2 - 1
    smooth_noise = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    side = int(torch.randint(4, 7, (), generator=generator))
    small = F.interpolate(images[:n].float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    blurred = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    blends = (images[n : 2 * n].float() + images[2 * n : 3 * n].float()) / 2
    return torch.cat([pixel_noise, smooth_noise, blurred, blends])


def loss_of(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], grayscale: torch.Tensor) -> torch.Tensor:
    total = 0.0
    for name in FACTORS:
        losses = F.cross_entropy(logits[name], labels[name], reduction="none")
        if name == "colour":
            losses = losses[~grayscale]  # colour is not identifiable in grayscale
        total = total + losses.mean()
    return total


def outlier_loss(logits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Outlier exposure (Hendrycks et al., 2019): push shape and colour towards uniform on non-shapes, so that
    validity (a confident shape and colour) means something on images unlike the data."""
    return sum(-logits[name].log_softmax(dim=1).mean() for name in ("shape", "colour"))


@torch.no_grad()
def accuracies(network: ShapesClassifier, images, labels, grayscale, sizes) -> dict[str, dict[str, float]]:
    predictions = {name: [] for name in FACTORS}
    for start in range(0, images.shape[0], 512):
        _, logits = network(images[start : start + 512].float())
        for name in FACTORS:
            predictions[name].append(logits[name].argmax(1))
    result = {}
    for name in FACTORS:
        correct = torch.cat(predictions[name]) == labels[name]
        groups = {"all": ~grayscale if name == "colour" else torch.ones_like(grayscale)}
        for size in SIZES:
            groups[f"{size}px"] = (sizes == size) & (~grayscale if name == "colour" else True)
        if name != "colour":
            groups["grayscale"] = grayscale
        result[name] = {group: round(correct[mask].float().mean().item(), 4) for group, mask in groups.items()}
    return result


@torch.no_grad()
def validity(network: ShapesClassifier, images: torch.Tensor) -> float:
    """Share of RGB images with shape and colour probabilities both >= VALIDITY_THRESHOLD."""
    _, logits = network(images.float())
    confident = torch.ones(images.shape[0], dtype=torch.bool)
    for name in ("shape", "colour"):
        confident &= logits[name].softmax(dim=1).amax(dim=1) >= VALIDITY_THRESHOLD
    return round(confident.float().mean().item(), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    parser.add_argument("--train-images", type=int, default=24_000)
    parser.add_argument("--held-out-images", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it)")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    train_images, train_labels, train_gray = render(args.train_images, TRAIN_SEED)
    test_images, test_labels, test_gray = render(args.held_out_images, HELD_OUT_SEED)
    test_sizes = torch.tensor(SIZES)[torch.arange(args.held_out_images) % len(SIZES)]
    print(f"rendered {args.train_images} + {args.held_out_images} images in {time.perf_counter() - started:.0f}s")

    network = ShapesClassifier()
    optimizer = torch.optim.Adam(network.parameters(), lr=args.lr)
    steps_per_epoch = args.train_images // args.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15
    )
    order_generator = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        network.train()
        order = torch.randperm(args.train_images, generator=order_generator)
        running = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            negatives = outliers(train_images[batch], order_generator)
            _, logits = network(torch.cat([train_images[batch].float(), negatives]))
            real_logits = {k: v[: len(batch)] for k, v in logits.items()}
            outlier_logits = {k: v[len(batch) :] for k, v in logits.items()}
            loss = loss_of(real_logits, {k: v[batch] for k, v in train_labels.items()}, train_gray[batch])
            loss = loss + OUTLIER_WEIGHT * outlier_loss(outlier_logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
        network.eval()
        shape_accuracy = accuracies(network, test_images, test_labels, test_gray, test_sizes)["shape"]["all"]
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {running / steps_per_epoch:.4f}, held-out shape accuracy "
            f"{shape_accuracy:.4f} ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {
        key: (tensor.half() if tensor.is_floating_point() else tensor).detach().contiguous()
        for key, tensor in network.state_dict().items()
    }
    # One metadata entry: safetensors writes several in an order that changes from run to run, and the file's
    # sha256 must not. The settings leave out --out, so the bytes do not depend on where the file is written.
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    description = {"name": SHAPES_CLASSIFIER_NAME, "factors": FACTORS, "trained_with": settings}
    metadata = {"lightning_gen": json.dumps(description, sort_keys=True)}
    save_file(state, str(args.out), metadata=metadata)
    shipped = load_shapes_classifier(args.out, expected_sha256=None)
    report = accuracies(shipped, test_images, test_labels, test_gray, test_sizes)
    rgb = test_images[~test_gray][:2000]
    outlier_validity = {}
    held_out_outliers = outliers(rgb, torch.Generator().manual_seed(1)).chunk(4)
    for kind, images in zip(("pixel_noise", "smooth_noise", "blurred", "blends"), held_out_outliers):
        outlier_validity[kind] = validity(shipped, images)
    report_validity = {"held_out_rgb": validity(shipped, rgb.float()), **outlier_validity}
    print(json.dumps({"held_out_accuracy": report, f"validity_at_{VALIDITY_THRESHOLD}": report_validity}, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), sha256 {sha256_file(args.out)}")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
