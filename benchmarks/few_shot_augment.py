"""Few-shot GAN training with and without DiffAugment, ADA and LeCam, at the same budget, on two small sets.

``--data shapes`` (default): a DCGAN on ``TRAIN_IMAGES`` shapes images, scored with the shapes evaluator (Fréchet
Shapes Distance, lower is better, and validity) on ``SAMPLES`` generated images against a separate draw of 5000
shapes images.

``--data digits``: the same on 500 real handwritten digits (the UCI optical digits test set as scikit-learn ships
it, 8x8 grey levels 0-16, committed as ``benchmarks/few_shot_augment/digits.csv.gz``; CC BY 4.0, E. Alpaydin and
C. Kaynak), upsampled to 16x16 and trained through ``ImageFolderDataModule`` from class subfolders. Scored by a small
digit classifier this script trains on the 1,297 digits the GAN never sees: Fréchet distance on its hidden features
(FDD), validity (max softmax >= 0.9) and the total variation distance of the predicted digit distribution.

Both report the discriminator's overfitting gap: its mean logit and E[sign(logit)] on the training images versus
on ``HELD_OUT`` images it never saw. Sample grids go to ``OUT/<config>.png``, figures to ``OUT/results.json``.

    python benchmarks/few_shot_augment.py [--data digits] [config ...]          # train and score; default: CONFIGS
    python benchmarks/few_shot_augment.py [--data digits] --score [config ...]  # (re)score the saved checkpoints
    python benchmarks/few_shot_augment.py [--data digits] --seed 1               # another training seed
    python benchmarks/few_shot_augment.py [--data digits] --table                # mean +- std over the seeds run
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from lightning_gen import GANModule
from lightning_gen.augment import AdaptiveAugment
from lightning_gen.data import ImageFolderDataModule, ShapesDataModule
from lightning_gen.data.shapes import ShapesDataset
from lightning_gen.metrics.shapes import evaluate_shapes
from lightning_gen.metrics.shapes_classifier import SHAPES_CLASSIFIER_SHA256
from lightning_gen.metrics.statistics import StandardFID

TRAIN_IMAGES = 500
HELD_OUT = 500  # images of the same distribution D never trains on: its train vs held-out gap
SAMPLES = 2000  # generated images per score
SEED = 0  # of the data sets and the digit classifier; training seeds are --seed
DIGITS_FILE = Path(__file__).parent / "few_shot_augment" / "digits.csv.gz"
# Per data set: image size, batch size and the budget in discriminator steps (= batches = generator steps with
# n_critic=1), sized so that a configuration trains in minutes on one CPU thread and the un-augmented
# discriminator has time to start memorising its 500 images.
DATA = {
    "shapes": {"image_size": 32, "channels": 3, "batch_size": 32, "batches": 3000},
    "digits": {"image_size": 16, "channels": 1, "batch_size": 32, "batches": 4000},
}
MODEL = {"latent_dim": 64, "width": 32, "ema_decay": 0.999}  # plus the configuration's arguments

CONFIGS = {
    "none": {},
    "diffaugment": {"augment": "diffaugment"},
    # p may move by 1 in 20k images: a short run can find its level and follow D (the paper's 500k is for
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


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


class ShapesTask:
    """500 + 500 shapes images of one seed; scored by the shipped shapes evaluator against another seed."""

    def __init__(self, out: Path) -> None:
        self.settings = DATA["shapes"]
        self.out = out

    def datamodule(self) -> ShapesDataModule:
        size, num_images = self.settings["image_size"], TRAIN_IMAGES + HELD_OUT
        return ShapesDataModule(
            image_size=size, num_images=num_images, batch_size=self.settings["batch_size"],
            val_fraction=HELD_OUT / num_images, seed=SEED,
        )  # fmt: skip

    def train_and_held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.datamodule()
        data.setup("fit")
        stack = lambda ds: as_float(torch.stack([ds[i][0] for i in range(len(ds))]))  # noqa: E731
        return stack(data.split_dataset("train")), stack(data.split_dataset("val"))

    def score(self, fake: GANModule | torch.Tensor) -> dict[str, float]:
        """``fake``: a model, or images in [-1, 1]."""
        reference = ShapesDataset(num_images=5000, image_size=self.settings["image_size"], seed=1)
        result = evaluate_shapes(reference, fake, num_samples=SAMPLES, device="cpu", seed=0)
        figures = {key: round(value, 4) for key, value in result.scalars().items() if key in ("fsd", "validity")}
        figures["shape_tv"] = round(result.factors["shape"].tv, 4)
        figures["colour_tv"] = round(result.factors["colour"].tv, 4)  # exposes a generator stuck on one colour
        figures["classifier_sha256"] = SHAPES_CLASSIFIER_SHA256[:16]  # FSDs compare only under the same classifier
        return figures


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 digits as uint8 (N, 1, 8, 8) in [0, 255] and their labels."""
    with gzip.open(DIGITS_FILE, "rt") as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.int64)
    images = torch.from_numpy(table[:, :64]).reshape(-1, 1, 8, 8)
    return (images * 255 + 8).div(16, rounding_mode="floor").to(torch.uint8), torch.from_numpy(table[:, 64])


def upsample(images: torch.Tensor, size: int) -> torch.Tensor:
    up = nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8)


class DigitClassifier(nn.Module):
    """A small MLP on 16x16 digits in [-1, 1]; its hidden layer gives the features of the Fréchet distance."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(size * size, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(images)
        return features, self.head(features)


class DigitsTask:
    """The first 500 digits train the GAN (from class subfolders through ImageFolderDataModule, no flips: a
    mirrored digit is not a digit); the other 1,297 train the scoring classifier (its last 297 measure its
    accuracy) and give the discriminator's held-out images and the real side of the Fréchet distance."""

    def __init__(self, out: Path) -> None:
        self.settings = DATA["digits"]
        self.out = out
        images, self.labels = load_digits()
        self.images = upsample(images, self.settings["image_size"])
        self.root = out / "digits_train"
        if not self.root.exists():
            for index in range(TRAIN_IMAGES):
                folder = self.root / str(int(self.labels[index]))
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(self.images[index, 0].numpy(), mode="L").save(folder / f"{index:04d}.png")
        self.classifier, self.accuracy = self._train_classifier()

    def datamodule(self) -> ImageFolderDataModule:
        return ImageFolderDataModule(
            self.root, image_size=self.settings["image_size"], channels=1, batch_size=self.settings["batch_size"],
            val_fraction=0.0, random_flip=False, seed=SEED,
        )  # fmt: skip

    def train_and_held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        return as_float(self.images[:TRAIN_IMAGES]), as_float(self.images[TRAIN_IMAGES : TRAIN_IMAGES + HELD_OUT])

    def _train_classifier(self) -> tuple[DigitClassifier, float]:
        torch.manual_seed(SEED)
        train, test = slice(TRAIN_IMAGES, -297), slice(-297, None)
        x, y = as_float(self.images), self.labels
        classifier = DigitClassifier(self.settings["image_size"])
        optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-3, weight_decay=1e-4)
        for _ in range(300):  # full-batch: 1,000 images
            optimizer.zero_grad()
            nn.functional.cross_entropy(classifier(x[train])[1], y[train]).backward()
            optimizer.step()
        classifier.eval()
        with torch.no_grad():
            accuracy = float((classifier(x[test])[1].argmax(1) == y[test]).float().mean())
        return classifier, accuracy

    @torch.no_grad()
    def score(self, fake: GANModule | torch.Tensor) -> dict[str, float]:
        """``fake``: a model, or images in [-1, 1]."""
        real = as_float(self.images[TRAIN_IMAGES:])
        fake = (fake if isinstance(fake, torch.Tensor) else fake.sample(SAMPLES, seed=0)).clamp(-1, 1)
        fake = (fake * 127.5 + 127.5).round() / 127.5 - 1  # quantised like a saved image
        fid = StandardFID(128)
        real_features, real_logits = self.classifier(real)
        fake_features, fake_logits = self.classifier(fake)
        fid.update(real_features, real=True)
        fid.update(fake_features, real=False)
        probabilities = fake_logits.softmax(1)
        real_share = real_logits.argmax(1).bincount(minlength=10).float() / len(real)
        fake_share = probabilities.argmax(1).bincount(minlength=10).float() / len(fake)
        return {
            "fdd": round(float(fid.compute()), 3),
            "validity": round(float((probabilities.max(1).values >= 0.9).float().mean()), 4),
            "real_validity": round(float((real_logits.softmax(1).max(1).values >= 0.9).float().mean()), 4),
            "digit_tv": round(float((fake_share - real_share).abs().sum() / 2), 4),
            "classifier_accuracy": round(self.accuracy, 4),
        }


def run(task, name: str, overrides: dict, out: Path, seed: int) -> dict:
    L.seed_everything(seed)
    settings = task.settings
    model = GANModule(image_size=settings["image_size"], channels=settings["channels"], **MODEL, **overrides)
    trainer = L.Trainer(
        # Lightning counts both optimizers' steps: 2 per batch with n_critic=1.
        max_steps=2 * settings["batches"], accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, default_root_dir=str(out / name),
    )  # fmt: skip
    started = time.perf_counter()
    trainer.fit(model, task.datamodule())
    seconds = time.perf_counter() - started
    trainer.save_checkpoint(out / f"{name}.ckpt")
    grid = torchvision.utils.make_grid(model.sample(64, seed=0), nrow=8, normalize=True, value_range=(-1, 1))
    torchvision.utils.save_image(grid, out / f"{name}.png")
    return {
        "config": name, **overrides, "seed": seed, "discriminator_steps": settings["batches"],
        "train_seconds": round(seconds, 1),
    }  # fmt: skip


def score(task, name: str, out: Path) -> dict:
    model = GANModule.load_from_checkpoint(out / f"{name}.ckpt", map_location="cpu")
    figures = discriminator_gap(model, *task.train_and_held_out())
    if isinstance(model.augment, AdaptiveAugment):
        figures["final_augment_p"] = round(float(model.augment.p), 3)
    figures.update(task.score(model))
    return figures


def write_montage(out: Path) -> Path | None:
    """``OUT/grids.png``: the sample grids of every configuration found, side by side in ``CONFIGS`` order."""
    grids = [torchvision.io.read_image(str(out / f"{name}.png")) for name in CONFIGS if (out / f"{name}.png").exists()]
    if not grids:
        return None
    montage = torchvision.utils.make_grid(torch.stack(grids).float() / 255, nrow=len(grids), padding=6, pad_value=1)
    torchvision.utils.save_image(montage, out / "grids.png")
    return out / "grids.png"


# Columns of --table per data set: (results key, heading, decimals).
TABLE_COLUMNS = {
    "shapes": [("fsd", "FSD", 1), ("validity", "validity", 3), ("shape_tv", "shape TV", 3), ("colour_tv", "colour TV", 3)],
    "digits": [("fdd", "FDD", 2), ("validity", "validity", 3), ("digit_tv", "digit TV", 3)],
}
# D's memorisation: mean logit on its training images minus on held-out ones, and E[sign] on each.
GAP_COLUMNS = [("d_logit_gap", "D logit gap", 2), ("d_sign_train", "D sign, train", 2),
               ("d_sign_held_out", "D sign, held out", 2)]  # fmt: skip


def markdown_table(data: str, root: Path = Path("runs/few_shot_augment")) -> str:
    """Mean +- standard deviation over the seeds run (``<data>``, ``<data>_seed<N>``) per configuration."""
    runs = [json.loads(f.read_text()) for f in sorted(root.glob(f"{data}*/results.json"))]
    columns = GAP_COLUMNS + TABLE_COLUMNS[data] + [("final_augment_p", "ADA p", 2)]
    lines = [
        f"| config | seeds | {' | '.join(heading for _, heading, _ in columns)} |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for name in ["real", *CONFIGS]:
        rows = [run[name] for run in runs if name in run][: 1 if name == "real" else None]  # real: seed-free
        for row in rows:
            if "d_logit_train" in row:
                row["d_logit_gap"] = row["d_logit_train"] - row["d_logit_held_out"]
        cells = []
        for key, _, decimals in columns:
            if key == "final_augment_p" and not name.startswith("ada"):
                values = []
            else:
                values = [row[key] for row in rows if key in row]
            if not values:
                cells.append("")
            elif len(values) == 1:
                cells.append(f"{values[0]:.{decimals}f}")
            else:
                cells.append(f"{np.mean(values):.{decimals}f} +- {np.std(values, ddof=1):.{decimals}f}")
        seeds = "-" if name == "real" else str(len(rows))
        lines.append(f"| {name} | {seeds} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", metavar="config", help=f"any of {', '.join(CONFIGS)} (default: all)")
    parser.add_argument("--data", choices=sorted(DATA), default="shapes")
    parser.add_argument("--score", action="store_true", help="only (re)score the saved checkpoints")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of every seed run and stop")
    parser.add_argument("--seed", type=int, default=0, help="training seed (weights, batch order, augmentations)")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/few_shot_augment/<data>[_seed<N>]")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(args.data))
        return
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configurations {unknown}; choose from {sorted(CONFIGS)}")
    out = args.out or Path("runs/few_shot_augment") / (args.data + (f"_seed{args.seed}" if args.seed else ""))
    out.mkdir(parents=True, exist_ok=True)
    task = (DigitsTask if args.data == "digits" else ShapesTask)(out)
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    # The GAN's training images scored as samples: a perfect memoriser's score, and the real-vs-real floor (they
    # are on neither real side of the scores). Cheap, so redone on every call, rescoring included.
    training_images = task.train_and_held_out()[0]
    results["real"] = {"config": "real: the 500 training images as samples", **task.score(training_images)}
    print(json.dumps(results["real"]), flush=True)
    for name in args.configs or list(CONFIGS):
        if not args.score:
            results[name] = run(task, name, CONFIGS[name], out, args.seed)
            results_file.write_text(json.dumps(results, indent=2))
        results.setdefault(name, {"config": name}).update(score(task, name, out))
        results_file.write_text(json.dumps(results, indent=2))
        print(json.dumps(results[name]), flush=True)
    write_montage(out)


if __name__ == "__main__":
    main()
