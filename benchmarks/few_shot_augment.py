"""Few-shot GAN training with and without DiffAugment, ADA and LeCam, at the same budget, scored on the shapes data.

Trains a DCGAN on ``TRAIN_IMAGES`` shapes images for ``STEPS`` discriminator steps per configuration, then reports
the Fréchet Shapes Distance (FSD, lower is better) and validity of ``SAMPLES`` generated images against a separate
draw of 5000 shapes images, and the discriminator's overfitting gap: its mean logit and E[sign(logit)] on the training images
versus on ``HELD_OUT`` images it never saw. Sample grids go to ``OUT/<config>.png``, figures to ``OUT/results.json``.

    python benchmarks/few_shot_augment.py [config ...]          # train and score; default: all of CONFIGS
    python benchmarks/few_shot_augment.py --score [config ...]  # (re)score the saved checkpoints only
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torchvision

from lightning_gen import GANModule
from lightning_gen.data import ShapesDataModule
from lightning_gen.data.shapes import ShapesDataset
from lightning_gen.metrics.shapes import evaluate_shapes
from lightning_gen.metrics.shapes_classifier import SHAPES_CLASSIFIER_SHA256

TRAIN_IMAGES = 500
HELD_OUT = 500  # images of the same distribution D never trains on: its train vs held-out gap
IMAGE_SIZE, WIDTH, LATENT_DIM, BATCH_SIZE = 32, 32, 64, 32
# Discriminator steps (= generator steps with n_critic=1). 1500 is what a shared 2-core CPU allowed; D had not
# memorised the 500 images by then (benchmarks/RESULTS.md), so the few-shot regime needs a larger budget.
STEPS = 1500
SAMPLES = 2000  # generated images per FSD
SEED = 0
OUT = Path("runs/few_shot_augment")
MODEL_CLASS = GANModule  # any class taking GANModule's arguments plus augment / ada_* / lecam_weight

CONFIGS = {
    "none": {},
    "diffaugment": {"augment": "diffaugment"},
    # p may move by 1 in 20k images: a 48k-image run can find its level and follow D (the paper's 500k is for
    # runs of tens of millions of images).
    "ada": {"augment": "ada", "ada_speed_images": 20_000},
    "lecam": {"lecam_weight": 0.1},
    "diffaugment+lecam": {"augment": "diffaugment", "lecam_weight": 0.1},
}


@torch.no_grad()
def discriminator_gap(model: GANModule, train: torch.Tensor, held_out: torch.Tensor) -> dict[str, float]:
    """D's mean logit and E[sign] on training vs held-out reals (un-augmented, eval mode for both)."""
    model.discriminator.eval()
    figures = {}
    for name, images in (("train", train), ("held_out", held_out)):
        logits = torch.cat([model.discriminator(batch).flatten() for batch in images.split(256)])
        figures[f"d_logit_{name}"] = round(float(logits.mean()), 3)
        figures[f"d_sign_{name}"] = round(float(logits.sign().mean()), 3)
    return figures


def run(name: str, overrides: dict) -> dict:
    L.seed_everything(SEED)
    num_images = TRAIN_IMAGES + HELD_OUT
    data = ShapesDataModule(image_size=IMAGE_SIZE, num_images=num_images, batch_size=BATCH_SIZE, val_fraction=HELD_OUT / num_images, seed=SEED)
    model = MODEL_CLASS(image_size=IMAGE_SIZE, channels=3, latent_dim=LATENT_DIM, width=WIDTH, ema_decay=0.999, **overrides)
    trainer = L.Trainer(
        max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(OUT / name),
    )
    started = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - started
    trainer.save_checkpoint(OUT / f"{name}.ckpt")
    grid = torchvision.utils.make_grid(model.sample(64, seed=0), nrow=8, normalize=True, value_range=(-1, 1))
    torchvision.utils.save_image(grid, OUT / f"{name}.png")
    return {"config": name, **overrides, "discriminator_steps": STEPS, "train_seconds": round(seconds, 1)}


def score(name: str) -> dict:
    """D's overfitting gap, and FSD / validity against a separate, larger draw of the shapes data (seed 1)."""
    model = MODEL_CLASS.load_from_checkpoint(OUT / f"{name}.ckpt", map_location="cpu")
    num_images = TRAIN_IMAGES + HELD_OUT
    data = ShapesDataModule(image_size=IMAGE_SIZE, num_images=num_images, batch_size=BATCH_SIZE, val_fraction=HELD_OUT / num_images, seed=SEED)
    data.setup("fit")
    to_float = lambda ds: torch.stack([ds[i][0] for i in range(len(ds))]).float() / 127.5 - 1  # noqa: E731
    figures = discriminator_gap(model, to_float(data.split_dataset("train")), to_float(data.split_dataset("val")))
    if getattr(model, "augment", None) is not None:
        figures["final_augment_p"] = round(float(model.augment.p), 3)
    reference = ShapesDataset(num_images=5000, image_size=IMAGE_SIZE, seed=1)
    result = evaluate_shapes(reference, model, num_samples=SAMPLES, device="cpu", seed=0)
    figures.update({key: round(value, 4) for key, value in result.scalars().items() if key in ("fsd", "validity")})
    figures["classifier_sha256"] = SHAPES_CLASSIFIER_SHA256[:16]  # FSDs compare only under the same classifier
    return figures


def main(argv: list[str]) -> None:
    score_only = "--score" in argv
    names = [arg for arg in argv if arg != "--score"] or list(CONFIGS)
    OUT.mkdir(parents=True, exist_ok=True)
    results_file = OUT / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for name in names:
        if not score_only:
            results[name] = run(name, CONFIGS[name])
            results_file.write_text(json.dumps(results, indent=2))
        results.setdefault(name, {"config": name}).update(score(name))
        results_file.write_text(json.dumps(results, indent=2))
        print(json.dumps(results[name]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
