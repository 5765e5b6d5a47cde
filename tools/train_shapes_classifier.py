"""Train the shapes classifier behind FSD, factor coverage and validity (``lightning_gen/metrics/shapes.py``).

Deterministic on CPU: the images are drawn procedurally from fixed seeds (training seed 1000, held-out seed
1001, neither of them the data module's default 0), torch is seeded and the thread count is fixed, so the same
torch version and ``--threads`` write the same weights file (byte for byte). Each image is drawn at one of the
sizes the data module offers (16-64 px) and a fifth of them in grayscale, then brought to 32x32 RGB by the
evaluator's own preprocessing, so the classifier sees what the evaluator will feed it. The colour head does not
learn from grayscale images (the evaluator ignores colour for them).

Two options, off by default, were tried for a next version and not shipped (``benchmarks/RESULTS.md``, "Shapes
evaluator", robustness): ``--noise-share`` adds label-keeping pixel noise to that share of the shapes (std up to
``--noise-std-max`` on the [-1, 1] scale), which stops noise of 13/255 turning half of the triangles into stars, and
``--lumpy-blobs`` adds irregular blobs to the outliers. Both cost confidence on clean real images.

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
from lightning_gen.data.shapes import BACKGROUND_COLOURS, COLOURS, SHAPE_KINDS, ShapesDataset
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
OUTLIER_WEIGHT = 0.5  # weight of the outlier-exposure term; 32 outliers of each kind per 128 shapes
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


def add_pixel_noise(
    images: torch.Tensor, grayscale: torch.Tensor, generator: torch.Generator, share: float, std_max: float
) -> torch.Tensor:
    """A random ``share`` of the images with Gaussian pixel noise of std U(0, std_max) each; grayscale images get
    the same noise in every channel, so they stay grayscale."""
    n = images.shape[0]
    std = torch.rand(n, generator=generator) * std_max * (torch.rand(n, generator=generator) < share)
    noise = torch.randn(images.shape, generator=generator)
    noise[grayscale] = noise[grayscale][:, :1].expand(-1, 3, -1, -1)
    return images.float() + std[:, None, None, None] * noise


def lumpy_blobs(n: int, generator: torch.Generator) -> torch.Tensor:
    """Irregular round blobs in the data's colours on its plain backgrounds: radius R (1 + sum of four random
    harmonics, k = 2..5, each 8-18% of R), so no blob is a circle or a rounded regular polygon. Drawn at 4x and
    box-averaged to 32x32 like the data; in [-1, 1]."""
    side = 32 * 4
    coordinates = (torch.arange(side) + 0.5) / side
    y, x = torch.meshgrid(coordinates, coordinates, indexing="ij")
    centre = 0.3 + 0.4 * torch.rand(n, 2, generator=generator)
    # The larger half of the data's sizes only: lumps on a small blob are sub-pixel and it would look like a circle.
    radius = (0.5 + 0.25 * torch.rand(n, generator=generator)) / 2
    dx, dy = x - centre[:, 0, None, None], y - centre[:, 1, None, None]
    angle = torch.atan2(dy, dx)
    harmonics = torch.arange(2, 6, dtype=torch.float32)
    amplitude = 0.08 + 0.10 * torch.rand(n, 4, generator=generator)
    phase = 2 * torch.pi * torch.rand(n, 4, generator=generator)
    wobble = (amplitude[:, :, None, None] * torch.cos(harmonics[None, :, None, None] * angle[:, None] + phase[:, :, None, None])).sum(1)
    inside = (dx**2 + dy**2).sqrt() < radius[:, None, None] * (1 + wobble)
    coverage = F.avg_pool2d(inside[:, None].float(), 4)
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 127.5 - 1
    backgrounds = torch.tensor(list(BACKGROUND_COLOURS.values()), dtype=torch.float32) / 127.5 - 1
    colour = palette[torch.randint(len(palette), (n,), generator=generator)][:, :, None, None]
    background = backgrounds[torch.randint(len(backgrounds), (n,), generator=generator)][:, :, None, None]
    return background + coverage * (colour - background)


def outliers(images: torch.Tensor, generator: torch.Generator, lumpy: bool = False) -> torch.Tensor:
    """Images that are not one clean shape, in equal parts: pixel noise, smooth noise, shapes blurred beyond
    recognition (shrunk to 4-6 px and blown up again), blends of two shapes (and lumpy blobs if ``lumpy``)."""
    n = images.shape[0] // (5 if lumpy else 4)
    pixel_noise = torch.rand(n, 3, 32, 32, generator=generator) * 2 - 1
    coarse = torch.rand(n, 3, 8, 8, generator=generator) * 2 - 1
    smooth_noise = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    side = int(torch.randint(4, 7, (), generator=generator))
    small = F.interpolate(images[:n].float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    blurred = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    blends = (images[n : 2 * n].float() + images[2 * n : 3 * n].float()) / 2
    kinds = [pixel_noise, smooth_noise, blurred, blends] + ([lumpy_blobs(n, generator)] if lumpy else [])
    return torch.cat(kinds)


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
    parser.add_argument("--noise-share", type=float, default=0.0, help="share of shapes given label-keeping pixel noise")
    parser.add_argument("--noise-std-max", type=float, default=0.15, help="largest noise std, [-1, 1] units")
    parser.add_argument("--lumpy-blobs", action="store_true", help="irregular blobs as a fifth kind of outlier")
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
            negatives = outliers(train_images[batch], order_generator, args.lumpy_blobs)
            shapes = train_images[batch].float()
            if args.noise_share > 0:  # not drawn at all otherwise: the defaults reproduce the shipped file
                shapes = add_pixel_noise(shapes, train_gray[batch], order_generator, args.noise_share, args.noise_std_max)
            _, logits = network(torch.cat([shapes, negatives]))
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
    # The options tried for a next version are recorded only when used, so the defaults keep the shipped bytes.
    for key, default in (("noise_share", 0.0), ("lumpy_blobs", False)):
        if settings[key] == default:
            del settings[key]
    if "noise_share" not in settings:
        del settings["noise_std_max"]
    description = {"name": SHAPES_CLASSIFIER_NAME, "factors": FACTORS, "trained_with": settings}
    metadata = {"lightning_gen": json.dumps(description, sort_keys=True)}
    save_file(state, str(args.out), metadata=metadata)
    shipped = load_shapes_classifier(args.out, expected_sha256=None)
    report = accuracies(shipped, test_images, test_labels, test_gray, test_sizes)
    rgb = test_images[~test_gray][:2000]
    outlier_validity = {}
    kinds = ("pixel_noise", "smooth_noise", "blurred", "blends") + (("lumpy_blobs",) if args.lumpy_blobs else ())
    held_out_outliers = outliers(rgb, torch.Generator().manual_seed(1), args.lumpy_blobs).chunk(len(kinds))
    for kind, images in zip(kinds, held_out_outliers):
        outlier_validity[kind] = validity(shipped, images)
    noise = torch.randn(test_images.shape, generator=torch.Generator().manual_seed(2))
    noise[test_gray] = noise[test_gray][:, :1].expand(-1, 3, -1, -1)
    noisy = test_images.float() + 0.1 * noise
    noisy_shape = accuracies(shipped, noisy, test_labels, test_gray, test_sizes)["shape"]
    report_validity = {
        "held_out_rgb": validity(shipped, rgb.float()),
        "held_out_rgb_noise_std_0.1": validity(shipped, noisy[~test_gray][:2000]),
        **outlier_validity,
    }
    print(json.dumps({
        "held_out_accuracy": report, "held_out_shape_accuracy_noise_std_0.1": noisy_shape,
        f"validity_at_{VALIDITY_THRESHOLD}": report_validity,
    }, indent=1))  # fmt: skip
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), sha256 {sha256_file(args.out)}")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
