"""``lightning-gen sample`` and the loader it shares with the evaluator: checkpoint or zoo model -> module.

Two outputs: a grid (``--out grid.png``) to look at, or one PNG per image (``--out-dir DIR``), the
way to generate synthetic data sets; large ``--n`` is generated in batches with a progress bar.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import torch

from lightning_gen._base import GenerativeModule
from lightning_gen._images import save_grid, save_images


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """Rebuild a ``GANModule`` or ``VAE`` from a Lightning checkpoint written by this library.

    The checkpoint is read with ``weights_only=True``: nothing in it is unpickled as code (path objects
    in data-module hyper-parameters are the only types allowed beyond torch's own list).
    """
    from lightning_gen.gan import GANModule
    from lightning_gen.vae import VAE
    from lightning_gen.zoo.hub import SAFE_CHECKPOINT_GLOBALS, load_checkpoint as read_checkpoint

    checkpoint = read_checkpoint(path)
    class_name = checkpoint.get("lightning_gen", {}).get("class")
    classes = {"GANModule": GANModule, "VAE": VAE}
    if class_name not in classes:
        raise ValueError(
            f"{str(path)!r} was not written by a lightning-gen module (its class is {class_name!r}); "
            f"expected one of {sorted(classes)}."
        )
    if checkpoint.get("hyper_parameters", {}).get("custom_networks"):
        raise ValueError(
            f"{str(path)!r} was trained with custom generator/discriminator modules, which a checkpoint does not "
            f"record. Load it in Python: {class_name}.load_from_checkpoint(path, generator=..., discriminator=...)."
        )
    with torch.serialization.safe_globals(SAFE_CHECKPOINT_GLOBALS):
        module = classes[class_name].load_from_checkpoint(path, map_location=map_location, weights_only=True)
    return module.eval()


def load_generative_module(source: str, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """Load a module from a ``.ckpt`` file, a Hub-format folder, a zoo name or a Hub repo id."""
    if source.endswith(".ckpt") or Path(source).is_file():
        return load_checkpoint(source, map_location)
    from lightning_gen.zoo import load_pretrained  # the zoo resolves folders, zoo names and repo ids

    return load_pretrained(source).to(map_location).eval()


def main(argv: Sequence[str] | None = None) -> int:
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
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: square)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch_size < 1:
        parser.error(f"--n and --batch-size must be >= 1, got {args.n} and {args.batch_size}")

    module = load_generative_module(args.ckpt or args.model, map_location=args.device)
    if args.out_dir:
        from tqdm.auto import tqdm

        written = 0
        with tqdm(total=args.n, unit="img", desc="sampling") as progress:
            for start in range(0, args.n, args.batch_size):
                count = min(args.batch_size, args.n - start)
                # One seed per batch keeps a seeded run repeatable whatever the batch boundaries fall on.
                seed = None if args.seed is None else args.seed + start
                save_images(module.sample(count, seed=seed), args.out_dir, start_index=start)
                written += count
                progress.update(count)
        print(f"wrote {written} images to {args.out_dir}")
    else:
        out = args.out or "grid.png"
        save_grid(module.sample(args.n, seed=args.seed, batch_size=args.batch_size), out, nrow=args.nrow)
        print(f"wrote a grid of {args.n} images to {out}")
    return 0
