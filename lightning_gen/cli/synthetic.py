"""``lightning-gen synthetic cas|gain|intra-fd``: is synthetic data useful? As JSON, with the protocol.

Thin argument parsing over :func:`~lightning_gen.metrics.classification_accuracy_score`,
:func:`~lightning_gen.metrics.augmentation_gain` and :func:`~lightning_gen.metrics.intra_class_frechet_distance`;
every number and protocol field comes from there. Real sides are class-subfolder image folders; the generated side
is such a folder (e.g. ``lightning-gen sample --out-dir DIR --per-class N``), a ``.ckpt`` or a zoo name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

_GENERATED = "generated images: a folder with one subfolder per class, a .ckpt of a class-conditional GANModule/VAE, or a zoo name"
_REAL = "a folder with one subfolder per class (sorted names are the labels)"


def _add_reading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-size", type=int, default=None, help="resize folder images like ImageFolderDataModule(image_size=N) (default: native size; the classifier's input is the real test images' size)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None, help="decode folders to 1 (grayscale) or 3 (RGB) channels (default: 3); also the classifier's input channels")
    parser.add_argument("--num-workers", type=int, default=0, help="image decoding processes (default: 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of a model's images (default: 0)")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the stratified subsets of labelled sets (default: 0)")
    parser.add_argument("--output", default=None, help="also write the JSON to this file")


def _add_classifier(parser: argparse.ArgumentParser) -> None:
    from lightning_gen.metrics.synthetic_classifier import ClassifierProtocol

    default = ClassifierProtocol()
    parser.add_argument("--seeds", type=int, nargs="+", default=list(default.seeds), help=f"classifier seeds (default: {' '.join(map(str, default.seeds))})")
    parser.add_argument("--steps", type=int, default=default.steps, help=f"optimizer steps per classifier, whatever the training set's size (default: {default.steps})")
    parser.add_argument("--batch-size", type=int, default=default.batch_size, help=f"classifier batch size (default: {default.batch_size})")
    parser.add_argument("--lr", type=float, default=default.lr, help=f"peak learning rate, cosine decay to 0 (default: {default.lr})")


def build_parser() -> argparse.ArgumentParser:
    """The ``lightning-gen synthetic`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lightning-gen synthetic",
        description=(
            "Metrics for synthetic training data, printed as JSON with the classifier protocol: CAS (a fixed "
            "classifier trained on generated images only, scored on real held-out images, beside the same "
            "classifier trained on real images), augmentation gain (real vs real + synthetic training data) and "
            "intra-class Frechet distance (per-class FD, averaged)."
        ),
    )
    commands = parser.add_subparsers(dest="metric", required=True, metavar="{cas,gain,intra-fd}")
    cas = commands.add_parser("cas", help="Classification Accuracy Score with its real-trained reference",
                              description="Classification Accuracy Score (Ravuri & Vinyals 2019) with its real-trained reference.")
    cas.add_argument("real_train", help=f"real training images: {_REAL}")
    cas.add_argument("real_test", help=f"real held-out images: {_REAL}")
    cas.add_argument("generated", help=_GENERATED)
    cas.add_argument("--num-samples", type=int, default=None, help="N generated training images (default: as many as REAL_TRAIN has)")
    cas.add_argument("--no-reference", action="store_true", help="skip the classifier trained on real images")
    _add_classifier(cas)
    _add_reading(cas)

    gain = commands.add_parser("gain", help="augmentation gain: real vs real + M synthetic images per class",
                               description="Classifier trained on REAL_TRAIN alone vs REAL_TRAIN + M synthetic images per class, both scored on REAL_TEST.")
    gain.add_argument("real_train", help=f"real training images: {_REAL}")
    gain.add_argument("real_test", help=f"real held-out images: {_REAL}")
    gain.add_argument("generated", help=_GENERATED)
    gain.add_argument("--per-class", type=int, required=True, help="M synthetic images added per class")
    gain.add_argument("--real-per-class", type=int, default=None, help="use only K real training images per class (small-data regime; a seeded stratified subset)")
    _add_classifier(gain)
    _add_reading(gain)

    intra = commands.add_parser("intra-fd", help="intra-class Frechet distance (per class, averaged)",
                                description="Frechet distance between each class's real and generated images, averaged over classes (StudioGAN's intra-FID).")
    intra.add_argument("real", help=f"real images: {_REAL}")
    intra.add_argument("generated", help=_GENERATED)
    intra.add_argument("--extractor", default=None, help="feature extractor name (default: inception-v3-compat; any registered one, e.g. dinov2-vit-l-14)")
    intra.add_argument("--weights", default=None, help="weights file of the extractor")
    intra.add_argument("--no-download", action="store_true", help="fail instead of downloading missing weights")
    intra.add_argument("--num-per-class", type=int, default=None, help="generated images per class (default: as many as the real class has)")
    intra.add_argument("--batch-size", type=int, default=64, help="images per extractor batch (default: 64)")
    _add_reading(intra)
    return parser


def _run(args: argparse.Namespace):
    from lightning_gen.metrics import ClassifierProtocol, augmentation_gain, classification_accuracy_score, intra_class_frechet_distance

    if args.metric == "intra-fd":
        return intra_class_frechet_distance(
            args.real, args.generated, extractor=args.extractor, weights=args.weights, download=not args.no_download,
            num_per_class=args.num_per_class, sample_seed=args.sample_seed, subset_seed=args.subset_seed,
            image_size=args.image_size, channels=args.channels or 3, batch_size=args.batch_size, device=args.device,
            num_workers=args.num_workers,
        )
    protocol = ClassifierProtocol(
        seeds=tuple(args.seeds), steps=args.steps, batch_size=args.batch_size, lr=args.lr, image_size=args.image_size,
        channels=args.channels, sample_seed=args.sample_seed, subset_seed=args.subset_seed, device=args.device,
    )
    if args.metric == "cas":
        return classification_accuracy_score(
            args.generated, args.real_test, None if args.no_reference else args.real_train,
            num_samples=args.num_samples or (None if not args.no_reference else _count(args.real_train)),
            protocol=protocol, num_workers=args.num_workers,
        )
    return augmentation_gain(
        args.generated, args.real_train, args.real_test, per_class=args.per_class, real_per_class=args.real_per_class,
        protocol=protocol, num_workers=args.num_workers,
    )


def _count(folder: str) -> int:
    """Images in a class-subfolder folder: N when the reference is skipped but N should still match it."""
    from lightning_gen.data import scan_image_folder

    return len(scan_image_folder(Path(folder)).records)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen synthetic``; returns the exit code (0 ok, 1 error, 2 usage error)."""
    args = build_parser().parse_args(argv)
    try:
        result = _run(args)
    except (OSError, ValueError, TypeError, LookupError) as error:
        # User-facing failures (bad paths, unlabelled folders, unconditional models, too few images) get one line.
        print(f"lightning-gen synthetic {args.metric}: error: {error}", file=sys.stderr)
        return 1
    text = result.to_json()
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0
