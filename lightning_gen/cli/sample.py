"""``lightning-gen sample``: a grid (``--out grid.png``) or one PNG per image (``--out-dir DIR``).

The model is a Lightning checkpoint (``--ckpt``) or, with ``--model``, a zoo name, a Hub id or a
folder written by ``save_pretrained``; see :func:`lightning_gen.sampling.load_generative_module`.
Large ``--n`` is streamed to disk in batches with a progress bar. A class-conditional model draws chosen classes
with ``--labels 0-9`` (a grid with one row per class, or with ``--out-dir`` one subfolder per class that
``ImageFolderDataModule`` reads back with the same labels); ``--per-class N`` sets the images per class.
``--truncation PSI`` trades diversity for fidelity (see :mod:`lightning_gen.latents`). ``--walk K --steps S`` draws K latents and writes the walk through
them as a grid (one row per segment) and an animated GIF (``--gif``; ``--mp4`` too when an encoder is
installed), keeping one label (``--labels 3``) or morphing between labels per point (``--labels 1,7,1``).
"""

from __future__ import annotations

import argparse
import sys
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
        "--truncation", type=float, default=None, metavar="PSI",
        help="truncation psi in (0, 1]: 1 = plain sampling, smaller = less diverse and more typical images",
    )
    walk = parser.add_argument_group("latent walks")
    walk.add_argument("--walk", type=int, default=None, metavar="K", help="walk through K random latents (K >= 2)")
    walk.add_argument("--steps", type=int, default=16, metavar="S", help="frames per segment of the walk (default 16)")
    walk.add_argument("--method", choices=("slerp", "lerp"), default="slerp", help="interpolation (default slerp)")
    walk.add_argument("--loop", action="store_true", help="close the walk back to the first latent")
    walk.add_argument("--gif", default=None, help="animated GIF of the walk (default: --out with .gif)")
    walk.add_argument("--mp4", default=None, help="also an MP4 (needs PyAV or ffmpeg; never required)")
    walk.add_argument("--fps", type=float, default=12.0, help="frames per second of the animation (default 12)")
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
        "ImageFolderDataModule reads back with the same labels; with --walk, one label kept along the walk ('3') "
        "or one per point to morph between ('1,7,1')",
    )
    parser.add_argument("--per-class", type=int, default=None, help="images per class with --labels (default: --n / classes, else 8)")
    args = parser.parse_args(argv)
    if args.sort_by_shape and args.out_dir:
        parser.error("--sort-by-shape orders a grid; it does not apply to --out-dir")
    if args.per_class is not None and args.labels is None:
        parser.error("--per-class needs --labels (e.g. --labels 0-9 --per-class 100)")
    if (args.n is not None and args.n < 1) or args.batch_size < 1:
        parser.error(f"--n and --batch-size must be >= 1, got {args.n} and {args.batch_size}")

    if args.truncation is not None and not 0 < args.truncation <= 1:
        parser.error(f"--truncation must be in (0, 1] (1 = no truncation), got {args.truncation}")
    if args.walk is not None:
        if args.walk < 2 or args.steps < 1:
            parser.error(f"--walk needs K >= 2 points and --steps >= 1, got {args.walk} and {args.steps}")
        if args.out_dir or args.sort_by_shape:
            parser.error("--walk writes a grid and an animation; --out-dir and --sort-by-shape do not apply")

    # Imported once the arguments are known good, so that usage errors answer without loading torch.
    import torch

    from lightning_gen._images import save_grid
    from lightning_gen.sampling import load_generative_module, write_samples

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    module = load_generative_module(args.ckpt or args.model, map_location=device)
    if args.walk is not None:
        return _write_walk(module, args, parser)
    if args.labels is not None:
        return _sample_classes(parser, module, args)
    args.n = 64 if args.n is None else args.n
    if args.out_dir:
        written = write_samples(
            module, args.out_dir, args.n, seed=args.seed, batch_size=args.batch_size, truncation=args.truncation
        )
        print(f"wrote {written} images to {args.out_dir}")
    else:
        out = args.out or "grid.png"
        images = module.sample(args.n, seed=args.seed, batch_size=args.batch_size, truncation=args.truncation)
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
        written = write_class_samples(
            module, args.out_dir, labels, per_class, seed=args.seed, batch_size=args.batch_size, truncation=args.truncation
        )
        print(f"wrote {sum(written.values())} images to {args.out_dir}: " + ", ".join(f"{k}/ {v}" for k, v in written.items()))
        return 0
    out = args.out or "grid.png"
    requested = torch.tensor(labels).repeat_interleave(per_class)
    images = module.sample(len(requested), seed=args.seed, labels=requested, batch_size=args.batch_size, truncation=args.truncation)
    save_grid(images, out, nrow=per_class)
    print(f"wrote a grid of {len(labels)} classes x {per_class} images to {out} (one row per class: {args.labels})")
    return 0


def _write_walk(module: object, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pathlib import Path

    import torch

    from lightning_gen._images import save_grid
    from lightning_gen.animation import save_gif, save_mp4
    from lightning_gen.latents import truncated_normal, truncation_threshold, walk_latents

    labels = None
    if args.labels is not None:
        try:
            labels = torch.tensor([int(x) for x in args.labels.split(",")])
        except ValueError:
            parser.error(f"--labels takes integers separated by commas, got {args.labels!r}")
        if len(labels) == 1:
            labels = labels.expand(args.walk)
        elif len(labels) != args.walk:
            parser.error(f"--labels gives {len(labels)} labels for --walk {args.walk} points; give 1 or {args.walk}")
    # The walk's points are drawn like sample()'s latents (on the CPU, seeded), truncated in z when asked.
    threshold = truncation_threshold(args.truncation) if args.truncation is not None else float("inf")
    generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    points = truncated_normal((args.walk, module.latent_dim), threshold, generator)
    if callable(getattr(module, "walk", None)):
        if labels is not None and not module.num_classes:
            parser.error("--labels applies to class-conditional models; this one is unconditional")
        frames = module.walk(points, args.steps, args.method, labels=labels, loop=args.loop)
    else:  # the VAE: decode the walk through its prior
        if labels is not None:
            parser.error(f"--labels applies to class-conditional GANs, not to {type(module).__name__}")
        with torch.no_grad():
            path = walk_latents(points, args.steps, args.method, args.loop).to(module.device)
            frames = module.eval().decode(path).float().clamp(-1, 1).cpu()
    out = Path(args.out or "walk.png")
    save_grid(frames, out, nrow=args.steps)
    gif = save_gif(frames, args.gif or out.with_suffix(".gif"), fps=args.fps)
    print(f"wrote a walk of {len(frames)} frames through {args.walk} latents to {out} and {gif}")
    if args.mp4:
        try:
            print(f"wrote {save_mp4(frames, args.mp4, fps=args.fps)}")
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0
