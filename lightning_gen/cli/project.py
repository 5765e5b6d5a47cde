"""``lightning-gen project IMAGE... --model NAME --out DIR``: find the latents that reproduce real images.

For each image (decoded like the data modules do: resized on the shorter side, centre-cropped, to the model's
size and channels) it writes ``DIR/<stem>.pt`` (or ``.npy`` with ``--format npy``: the latent alone), the
reconstruction ``DIR/<stem>_projected.png``, and for all images ``DIR/comparison.png`` (original and
reconstruction side by side, one pair per row). See :func:`lightning_gen.projection.project`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen project``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="lightning-gen project", description="Project real images into a generator's latent space."
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="Lightning checkpoint (.ckpt) written by GANModule or VAE")
    source.add_argument("--model", help="zoo name, Hub repo id (ORG/NAME) or a folder written by save_pretrained")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for latents and images (created)")
    parser.add_argument(
        "--labels", default=None,
        help="conditional models: one label for all images ('3') or one per image ('3,1,4'); default: try every class",
    )
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate (default 0.05)")
    parser.add_argument("--restarts", type=int, default=1, help="random initial latents per image (default 1)")
    parser.add_argument(
        "--perceptual", default=None, help="feature network for a perceptual loss: 'shapes' (the shapes classifier)"
    )
    parser.add_argument("--perceptual-weight", type=float, default=0.1, help="weight of the perceptual term (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=16, help="images optimised together (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial latents (default 0)")
    parser.add_argument("--format", choices=("pt", "npy"), default="pt", help="latent file format (default pt)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    for name in ("steps", "restarts", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    from lightning_gen._images import save_grid
    from lightning_gen.data import ImageDecodeError, decode_image
    from lightning_gen.projection import project
    from lightning_gen.sampling import load_generative_module

    model = load_generative_module(args.ckpt or args.model, map_location=args.device)
    try:
        images = torch.stack(
            [torch.from_numpy(decode_image(path, model.image_size, model.channels)) for path in args.images]
        )
    except (OSError, ImageDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    labels = None
    if args.labels is not None:
        try:
            values = [int(x) for x in args.labels.split(",")]
        except ValueError:
            parser.error(f"--labels takes integers separated by commas, got {args.labels!r}")
        if len(values) not in (1, len(args.images)):
            parser.error(f"--labels gives {len(values)} labels for {len(args.images)} images; give 1 or {len(args.images)}")
        labels = torch.tensor(values * len(args.images) if len(values) == 1 else values)
    try:
        result = project(
            model, images, labels, steps=args.steps, lr=args.lr, perceptual=args.perceptual,
            perceptual_weight=args.perceptual_weight, restarts=args.restarts, batch_size=args.batch_size, seed=args.seed,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(args.images)
    for index, stem in enumerate(stems):
        latent = result.latents[index]
        label = None if result.labels is None else int(result.labels[index])
        if args.format == "npy":
            import numpy as np

            np.save(out / f"{stem}.npy", latent.numpy())
        else:
            record = {"latent": latent, "label": label, "loss": float(result.losses[index]), "pixel_mse": float(result.pixel_mse[index])}
            torch.save(record, out / f"{stem}.pt")
        _save_png(result.reconstructions[index], out / f"{stem}_projected.png")
        label_text = "" if label is None else f", label {label}"
        print(
            f"{stem}: loss {float(result.losses[index]):.4f} (initial {float(result.initial_losses[index]):.4f}), "
            f"pixel MSE {float(result.pixel_mse[index]):.4f}{label_text}"
        )
    pairs = torch.stack([images.float() / 127.5 - 1, result.reconstructions], dim=1).flatten(0, 1)
    save_grid(pairs, out / "comparison.png", nrow=2)
    print(f"wrote {len(stems)} latent(s), reconstructions and comparison.png to {out}")
    return 0


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    from lightning_gen._images import to_uint8

    array = to_uint8(image).permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


def _unique_stems(paths: Sequence[str]) -> list[str]:
    """File stems, numbered where two images share one (a/x.png and b/x.png)."""
    stems, seen = [], {}
    for path in paths:
        stem = Path(path).stem
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        stems.append(stem if count == 0 else f"{stem}_{count}")
    return stems
