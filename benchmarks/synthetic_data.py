"""Is synthetic data useful? The CAS table and the augmentation-gain table on the built-in digits, two regimes.

* **full**: the whole training split of ``DigitsDataModule``; the generator (``--full-generator``) was trained on it.
* **small**: ``REAL_PER_CLASS`` real digits per class, the stratified subset
  ``stratified_subset_indices(train.labels, per_class=REAL_PER_CLASS, seed=SUBSET_SEED)``; its generator
  (``--small-generator``) must have been trained on exactly that subset, so the synthetic digits carry nothing the
  baseline classifier did not see. ``--write-subset DIR`` writes that subset as class folders to train it on
  (``lightning-gen fit ... --data ImageFolderDataModule --data.root DIR --data.channels 1``).

Both tables are scored on the data module's held-out split with the classifier protocol below
(``lightning_gen.metrics.ClassifierProtocol``, recorded in the JSON): CAS (trained on N generated digits only) beside
the reference (N real digits), and the classifier on the real digits alone vs plus M synthetic digits per class,
saying whether each gain exceeds the seed spread (``|gain| > sqrt(std_real^2 + std_augmented^2)``).

    python benchmarks/synthetic_data.py --write-subset /tmp/digits50                    # the small regime's data
    python benchmarks/synthetic_data.py --full-generator full.ckpt --small-generator small.ckpt [--out results.json]

Generators are ``.ckpt`` files, zoo names or class-subfolder folders of generated digits. One classifier training
takes seconds on a CPU core (600 steps of batch 64); the full table is SEEDS x (2 CAS + 2 x len(PER_CLASS) gain)
trainings per regime. Run under ``nice`` on a shared machine.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from lightning_gen.metrics import (
    ClassifierProtocol,
    LabelledImages,
    augmentation_gain,
    classification_accuracy_score,
    stratified_subset_indices,
)
from lightning_gen.metrics.synthetic_sources import datamodule_split, held_out_split

IMAGE_SIZE = 32  # the digits padded 28 -> 32, the main job's size
REAL_PER_CLASS = 50  # the small-data regime
PER_CLASS = (100, 400)  # M: synthetic digits added per class
SEEDS = (0, 1, 2, 3, 4)  # classifier seeds
SUBSET_SEED = 0  # of the small regime's real subset (and of every other stratified draw)
PROTOCOL = ClassifierProtocol(seeds=SEEDS, subset_seed=SUBSET_SEED, device="cpu")


def digits() -> tuple[LabelledImages, LabelledImages, str]:
    """The training and held-out splits of ``DigitsDataModule``, read in order without flips."""
    try:
        from lightning_gen.data.digits import DigitsDataModule
    except ImportError as error:
        sys.exit(f"benchmarks/synthetic_data.py needs lightning_gen.data.digits.DigitsDataModule (issue 20, item 1), "
                 f"which this checkout does not have ({error}).")
    wanted = {"image_size": IMAGE_SIZE, "channels": 1, "num_workers": 0}
    accepted = inspect.signature(DigitsDataModule).parameters
    datamodule = DigitsDataModule(**{k: v for k, v in wanted.items() if k in accepted})
    for stage in ("fit", "test"):
        datamodule.setup(stage)
    held_out = held_out_split(datamodule)
    return datamodule_split(datamodule, "train"), datamodule_split(datamodule, held_out), held_out


def write_subset(train: LabelledImages, folder: Path) -> None:
    from PIL import Image

    chosen = stratified_subset_indices(train.labels, per_class=REAL_PER_CLASS, seed=SUBSET_SEED)
    for index in chosen:
        target = folder / str(int(train.labels[index]))
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(train.images[index, 0].numpy()).save(target / f"{index:05d}.png")
    print(f"wrote {len(chosen)} real digits ({REAL_PER_CLASS} per class, subset seed {SUBSET_SEED}) to {folder}")


def _cell(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full-generator", help="generator trained on the full training split (.ckpt, zoo name or folder)")
    parser.add_argument("--small-generator", help=f"generator trained on the {REAL_PER_CLASS}-per-class subset only")
    parser.add_argument("--write-subset", type=Path, help="write the small regime's real subset as class folders and stop")
    parser.add_argument("--per-class", type=int, nargs="+", default=list(PER_CLASS), help="M values of the gain table")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--steps", type=int, default=PROTOCOL.steps)
    parser.add_argument("--out", type=Path, default=None, help="write every result (with its protocol) as JSON")
    args = parser.parse_args()
    train, test, split = digits()
    if args.write_subset:
        write_subset(train, args.write_subset)
        return
    protocol = replace(PROTOCOL, seeds=tuple(args.seeds), steps=args.steps)
    subset = train.subset(stratified_subset_indices(train.labels, per_class=REAL_PER_CLASS, seed=SUBSET_SEED),
                          f"{train.description} ({REAL_PER_CLASS} per class, seed {SUBSET_SEED})")
    regimes = [(name, generator, real) for name, generator, real in (
        ("full", args.full_generator, train), (f"{REAL_PER_CLASS} per class", args.small_generator, subset)) if generator]
    if not regimes:
        parser.error("give --full-generator and/or --small-generator (or --write-subset DIR)")
    records, cas_rows, gain_rows = [], [], []
    for name, generator, real in regimes:
        started = time.perf_counter()
        cas = classification_accuracy_score(generator, test, real, num_samples=len(real), protocol=protocol)
        records.append({"table": "cas", "regime": name, "seconds": round(time.perf_counter() - started, 1), **cas.to_dict()})
        cas_rows.append(f"| {name} | {len(real)} | {_cell(cas.cas, cas.cas_std)} | {_cell(cas.real_reference, cas.real_reference_std)} | {cas.gap:+.4f} |")
        for m in args.per_class:
            started = time.perf_counter()
            gain = augmentation_gain(generator, train, test, per_class=m, protocol=protocol,
                                     real_per_class=None if real is train else REAL_PER_CLASS)
            records.append({"table": "gain", "regime": name, "seconds": round(time.perf_counter() - started, 1), **gain.to_dict()})
            gain_rows.append(
                f"| {name} | {gain.num_real_train} | {m} | {_cell(gain.real_only, gain.real_only_std)} | "
                f"{_cell(gain.augmented, gain.augmented_std)} | {gain.gain:+.4f} | {gain.gain_spread or 0:.4f} | "
                f"{'yes' if gain.exceeds_seed_spread else 'no'} |"
            )
    seeds = len(protocol.seeds)
    print(f"\nCAS on {len(test)} held-out digits ({split} split), {seeds} classifier seeds, {protocol.steps} steps:\n")
    print("| regime | N | CAS | real-trained reference | CAS - reference |\n|---|---|---|---|---|")
    print("\n".join(cas_rows))
    print(f"\nAugmentation gain on the same digits ({seeds} seeds; exceeds = |gain| > sqrt(std_real^2 + std_aug^2)):\n")
    print("| regime | real images | M per class | real only | real + synthetic | gain | seed spread | exceeds |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(gain_rows))
    if args.out:
        args.out.write_text(json.dumps(records, indent=2) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
