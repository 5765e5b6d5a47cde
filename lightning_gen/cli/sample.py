"""``lightning-gen sample``: a grid (``--out grid.png``) or one PNG per image (``--out-dir DIR``).

The model is a Lightning checkpoint (``--ckpt``) or, with ``--model``, a zoo name, a Hub id or a
folder written by ``save_pretrained``; see :func:`lightning_gen.sampling.load_generative_module`.
Large ``--n`` is streamed to disk in batches with a progress bar. A class-conditional model draws chosen classes
with ``--labels 0-9`` (a grid with one row per class, or with ``--out-dir`` one subfolder per class that
``ImageFolderDataModule`` reads back with the same labels); ``--per-class N`` sets the images per class.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from typing import Any

def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen sample``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="lightning-gen sample", description="Generate images from a trained model.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="Lightning checkpoint (.ckpt) written by GANModule or VAE")
    source.add_argument("--model", help="zoo name, Hub repo id (ORG/NAME) or a folder written by save_pretrained")
    parser.add_argument("--n", type=int, default=None, help="number of images (default 64; with --labels 8 per class)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--out", default=None, help="write one grid PNG here (default grid.png)")
    output.add_argument("--out-dir", default=None, help="write one PNG per image into this folder")
    parser.add_argument("--seed", type=int, default=None, help="seed for repeatable samples")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    parser.add_argument("--device", default=None, help="where to sample (default: cuda when available, else cpu)")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: square)")
    parser.add_argument(
        "--sort-by-shape",
        action="store_true",
        help="order the grid by the shape the shapes evaluator sees (circles, squares, ..., unrecognised last), "
        "to see a shapes model's coverage at a glance; the kinds and counts are printed",
    )
    parser.add_argument(
        "--labels",
        default=None,
        help="class-conditional models: draw these classes, e.g. 0-9, 0,3,7 or all; a grid gets one row per class, "
        "--out-dir one subfolder per class (named by the label, or the model's class names) that "
        "ImageFolderDataModule reads back with the same labels",
    )
    parser.add_argument("--per-class", type=int, default=None, help="images per class with --labels (default: --n / classes, else 8)")
    args = parser.parse_args(argv)
    if args.sort_by_shape and args.out_dir:
        parser.error("--sort-by-shape orders a grid; it does not apply to --out-dir")
    if args.per_class is not None and args.labels is None:
        parser.error("--per-class needs --labels (e.g. --labels 0-9 --per-class 100)")
    if (args.n is not None and args.n < 1) or args.batch_size < 1:
        parser.error(f"--n and --batch-size must be >= 1, got {args.n} and {args.batch_size}")

    # Imported once the arguments are known good, so that usage errors answer without loading torch.
    import torch

    from lightning_gen._images import save_grid
    from lightning_gen.sampling import load_generative_module, write_samples

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    module = load_generative_module(args.ckpt or args.model, map_location=device)
    if args.labels is not None:
        return _sample_classes(parser, module, args)
    args.n = 64 if args.n is None else args.n
    if args.out_dir:
        written = write_samples(module, args.out_dir, args.n, seed=args.seed, batch_size=args.batch_size)
        print(f"wrote {written} images to {args.out_dir}")
    else:
        out = args.out or "grid.png"
        images = module.sample(args.n, seed=args.seed, batch_size=args.batch_size)
        if args.sort_by_shape:
            from collections import Counter

            from lightning_gen.metrics.shapes_classifier import sort_by_predicted_shape

            images, kinds = sort_by_predicted_shape(images)
            print("shapes in the grid, in order:", ", ".join(f"{kind} {count}" for kind, count in Counter(kinds).items()))
        save_grid(images, out, nrow=args.nrow)
        print(f"wrote a grid of {args.n} images to {out}")
    return 0


def _sample_classes(parser: argparse.ArgumentParser, module: Any, args: argparse.Namespace) -> int:
    """``--labels``: a grid with one row per class, or one subfolder per class with ``--out-dir``."""
    import torch

    from lightning_gen._images import save_grid
    from lightning_gen.sampling import parse_labels, write_class_samples

    if args.sort_by_shape or args.nrow:
        parser.error("--sort-by-shape and --nrow lay out a grid; with --labels the grid has one row per class")
    try:
        labels = parse_labels(args.labels, getattr(module, "num_classes", 0))
    except ValueError as error:
        parser.error(str(error))
    per_class = args.per_class
    if per_class is None:
        if args.n is not None and args.n % len(labels):
            parser.error(f"--n {args.n} does not split into {len(labels)} classes; pass a multiple of {len(labels)} or --per-class")
        per_class = 8 if args.n is None else args.n // len(labels)
    elif args.n is not None and args.n != per_class * len(labels):
        parser.error(f"--n {args.n} contradicts --per-class {per_class} x {len(labels)} classes; give one of them")
    if per_class < 1:
        parser.error(f"--per-class must be >= 1, got {per_class}")
    if args.out_dir:
        written = write_class_samples(module, args.out_dir, labels, per_class, seed=args.seed, batch_size=args.batch_size)
        print(f"wrote {sum(written.values())} images to {args.out_dir}: " + ", ".join(f"{k}/ {v}" for k, v in written.items()))
        return 0
    out = args.out or "grid.png"
    requested = torch.tensor(labels).repeat_interleave(per_class)
    images = module.sample(len(requested), seed=args.seed, labels=requested, batch_size=args.batch_size)
    save_grid(images, out, nrow=per_class)
    print(f"wrote a grid of {len(labels)} classes x {per_class} images to {out} (one row per class: {args.labels})")
    return 0
