"""Which BatchNorm statistics should the EMA generator sample with? Scores ``GANModule(ema_batchnorm=...)``'s three
conventions on the same averaged weights, with an evaluator you choose.

The EMA weights do not depend on the convention (only its BatchNorm buffers do), so one run trained with the
default ``"average"`` gives all three: ``average`` samples with its buffers as trained, ``copy`` with the live
generator's buffers, ``recompute`` with standing statistics recomputed for the averaged weights
(``GeneratorEMA.recompute_batchnorm_statistics``, 16 seeded batches of 64 latents). A checkpoint trained with
``"copy"`` or ``"recompute"`` has no averaged statistics, so ``average`` is left out for it.

    python benchmarks/ema_batchnorm.py                                   # trains the shapes recipe briefly
    python benchmarks/ema_batchnorm.py --checkpoint run/last.ckpt        # a GANModule checkpoint with ema_decay
    python benchmarks/ema_batchnorm.py --checkpoint run.ckpt --evaluator my_eval:digits_score

``--evaluator module:function`` names any callable ``function(model) -> float | dict | result`` (a result with
``scalars()``, like ``evaluate_shapes``'s, or ``to_dict()``); the module is imported from the current directory
or ``PYTHONPATH``. The default scores the shapes data with :func:`lightning_gen.metrics.evaluate_shapes`
(FSD, validity, shape-kind TV; 2,000 samples against the first 5,000 training images). One JSON line per
convention goes to stdout.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_gen import GANModule
from lightning_gen.data import ShapesDataModule

# The zoo's dcgan-shapes32 recipe (zoo/dcgan-shapes32/recipe.yaml), trained for TRAIN_EPOCHS only.
RECIPE_MODEL = {"image_size": 32, "channels": 3, "latent_dim": 64, "width": 32, "ema_decay": 0.999}
RECIPE_DATA = {"image_size": 32, "num_images": 20_000, "batch_size": 64, "seed": 0, "num_workers": 0}
TRAIN_EPOCHS, TRAIN_SEED = 2, 0
NUM_REAL, NUM_SAMPLES, SAMPLE_SEED = 5000, 2000, 123
CONVENTIONS = ("average", "copy", "recompute")


def shapes_evaluator(num_samples: int = NUM_SAMPLES) -> Callable[[GANModule], Any]:
    """The default evaluator: FSD, validity and factor coverage on the shapes data (``evaluate_shapes``)."""
    from lightning_gen.metrics import evaluate_shapes

    real = ShapesDataModule(**{**RECIPE_DATA, "val_fraction": 0.0}).split_dataset("train")
    return lambda model: evaluate_shapes(real, model, num_samples=num_samples, num_real=NUM_REAL, seed=SAMPLE_SEED)


def load_evaluator(spec: str | None) -> Callable[[GANModule], Any]:
    if spec is None:
        return shapes_evaluator()
    module_name, _, function_name = spec.partition(":")
    if not function_name:
        raise SystemExit(f"--evaluator must be 'module:function', got {spec!r}.")
    sys.path.insert(0, str(Path.cwd()))
    return getattr(importlib.import_module(module_name), function_name)


def as_scores(result: Any) -> dict[str, float]:
    """The evaluator's result as a flat dict of numbers."""
    if isinstance(result, (int, float)):
        return {"score": float(result)}
    if hasattr(result, "scalars"):
        return {k: float(v) for k, v in result.scalars().items()}
    if hasattr(result, "to_dict"):
        result = result.to_dict()
    return {k: float(v) for k, v in dict(result).items() if isinstance(v, (int, float))}


def train_briefly(epochs: int) -> GANModule:
    pl.seed_everything(TRAIN_SEED)
    model = GANModule(**RECIPE_MODEL)
    trainer = pl.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=ShapesDataModule(**RECIPE_DATA))
    return model


def variants(model: GANModule) -> dict[str, GANModule]:
    """The same averaged weights with each convention's statistics."""
    if model.generator_ema is None:
        raise SystemExit("The model has no EMA generator (ema_decay=None): there is nothing to compare.")
    trained_with = model.hparams.get("ema_batchnorm", "average")
    out = {}
    for convention in CONVENTIONS:
        if convention == "average" and trained_with != "average":
            print(json.dumps({"convention": "average", "skipped": f"trained with ema_batchnorm={trained_with!r}"}))
            continue
        variant = copy.deepcopy(model).cpu()
        ema = variant.generator_ema
        ema.batchnorm = convention
        if convention == "copy":
            with torch.no_grad():
                for name, buffer in ema.module.named_buffers():
                    buffer.copy_(variant.generator.get_buffer(name))
        ema.needs_statistics = convention == "recompute"  # recomputed before the evaluator's first sample
        variant.hparams.ema_batchnorm = convention
        out[convention] = variant.eval()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a GANModule checkpoint (default: train the shapes recipe briefly)")
    parser.add_argument("--epochs", type=int, default=TRAIN_EPOCHS, help="epochs of the brief training run")
    parser.add_argument("--evaluator", help="module:function scoring a model (default: the shapes evaluator)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    evaluator = load_evaluator(args.evaluator)
    if args.checkpoint is not None:
        model = GANModule.load_from_checkpoint(args.checkpoint, map_location="cpu", weights_only=True)
        source = str(args.checkpoint)
    else:
        model = train_briefly(args.epochs)
        source = f"shapes recipe, {args.epochs} epoch(s), seed {TRAIN_SEED}"
    for convention, variant in variants(model).items():
        started = time.perf_counter()
        scores = as_scores(evaluator(variant))
        line = {"convention": convention, "generator_step": model.generator_step, "source": source, **scores}
        print(json.dumps({**line, "seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
