"""``lightning-gen sample``: a grid (``--out grid.png``) or one PNG per image (``--out-dir DIR``).

The model is a Lightning checkpoint (``--ckpt``) or, with ``--model``, a zoo name, a Hub id or a
folder written by ``save_pretrained``; see :func:`lightning_gen.sampling.load_generative_module`.
Large ``--n`` is streamed to disk in batches with a progress bar.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen sample``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="lightning-gen sample", description="Generate images from a trained model.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="Lightning checkpoint (.ckpt) written by GANModule or VAE")
    source.add_argument("--model", help="zoo name, Hub repo id (ORG/NAME) or a folder written by save_pretrained")
    parser.add_argument("--n", type=int, default=64, help="number of images (default 64)")
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
    args = parser.parse_args(argv)
    if args.sort_by_shape and args.out_dir:
        parser.error("--sort-by-shape orders a grid; it does not apply to --out-dir")
    if args.n < 1 or args.batch_size < 1:
        parser.error(f"--n and --batch-size must be >= 1, got {args.n} and {args.batch_size}")

    # Imported once the arguments are known good, so that usage errors answer without loading torch.
    import torch

    from lightning_gen._images import save_grid
    from lightning_gen.sampling import load_generative_module, write_samples

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    module = load_generative_module(args.ckpt or args.model, map_location=device)
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
