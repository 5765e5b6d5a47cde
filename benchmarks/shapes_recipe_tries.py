"""Try a change to the main job's recipe: train GANModule on the shapes data and score it every K batches.

Each evaluation draws 1,000 images from the EMA generator and from the raw one (fixed latents) and scores them with
the shapes evaluator (FSD, validity, shape-kind TV and shares) against the first 5,000 training images; the line
goes to stdout and ``OUT/<name>.jsonl``, the module's state dict to ``OUT/<name>_<batch>.pt``. Settings not given
are the recipe's (``zoo/dcgan-shapes32/recipe.yaml``: 32 px RGB, latent 64, width 32, 20,000 images, batch 64).

    python benchmarks/shapes_recipe_tries.py NAME '{"r1_weight": 0.1, "d_norm": "none", "width": 48}' \\
        --epochs 20 --every 1000 [--data '{"batch_size": 32}'] [--generator upsample] [--discriminator mbstd]

Used for the recipe tries of issue 12 in ``benchmarks/RESULTS.md``; one thread per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_gen import GANModule
from lightning_gen.data import ShapesDataModule
from lightning_gen.metrics.shapes import ShapesEvaluator
from try_networks import MinibatchStdDiscriminator, UpsampleGenerator  # beside this script

RECIPE_MODEL = {"image_size": 32, "channels": 3, "latent_dim": 64, "width": 32, "ema_decay": 0.999}
RECIPE_DATA = {"image_size": 32, "num_images": 20_000, "batch_size": 64, "seed": 0, "num_workers": 0}
NUM_REAL, NUM_SAMPLES, SAMPLE_SEED = 5000, 1000, 123


class ScoreEvery(pl.Callback):
    """Score the EMA and the raw generator every ``every`` batches; save the module's state with each score."""

    def __init__(self, evaluator: ShapesEvaluator, every: int, out: Path, name: str) -> None:
        self.evaluator, self.every, self.out, self.name = evaluator, every, out, name
        self.started = time.perf_counter()
        self.jsonl = (out / f"{name}.jsonl").open("w")

    @torch.no_grad()
    def score(self, generator: torch.nn.Module, latent_dim: int) -> dict:
        self.evaluator.reset_fake()
        latents = torch.randn(NUM_SAMPLES, latent_dim, generator=torch.Generator().manual_seed(SAMPLE_SEED))
        training = generator.training
        generator.eval()
        for batch in latents.split(250):
            self.evaluator.update_fake(generator(batch).clamp(-1, 1))
        generator.train(training)
        result = self.evaluator.compute()
        shape = result.factors["shape"]
        return {
            "fsd": round(result.fsd, 1), "validity": round(result.validity, 3), "shape_tv": round(shape.tv, 3),
            "shape_shares": {kind: round(share, 3) for kind, share in shape.generated.items()},
        }  # fmt: skip

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        done = trainer.fit_loop.total_batch_idx + 1
        if done % self.every:
            return
        record = {"batch": done, "seconds": round(time.perf_counter() - self.started)}
        if module.generator_ema is not None:
            record["ema"] = self.score(module.sampling_generator, module.hparams.latent_dim)
        record["raw"] = self.score(module.generator, module.hparams.latent_dim)
        torch.save(module.state_dict(), self.out / f"{self.name}_{done}.pt")
        print(json.dumps(record), flush=True)
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("model", type=json.loads, help="GANModule arguments (JSON) changed from the recipe's")
    parser.add_argument("--data", type=json.loads, default={}, help="ShapesDataModule arguments changed (JSON)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--every", type=int, default=600, help="batches between scores")
    parser.add_argument("--out", type=Path, default=Path("runs/shapes_recipe_tries"))
    parser.add_argument("--generator", choices=("dcgan", "upsample"), default="dcgan", help="upsample: try_networks.py")
    parser.add_argument("--discriminator", choices=("dcgan", "mbstd"), default="dcgan", help="mbstd: try_networks.py")
    parser.add_argument("--limit-batches", type=int, default=None, help="batches per epoch (a quick check)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    pl.seed_everything(0)
    data = ShapesDataModule(**{**RECIPE_DATA, **args.data})
    evaluator = ShapesEvaluator()
    real = data.split_dataset("train")
    evaluator.update_real(torch.stack([real[i][0] for i in range(min(NUM_REAL, len(real)))]))
    settings = {**RECIPE_MODEL, **args.model}
    networks = {}
    if args.generator == "upsample":
        networks["generator"] = UpsampleGenerator(settings["latent_dim"], settings["width"])
    if args.discriminator == "mbstd":
        networks["discriminator"] = MinibatchStdDiscriminator(settings["width"])
    model = GANModule(**settings, **networks)
    trainer = pl.Trainer(
        max_epochs=args.epochs, limit_train_batches=args.limit_batches, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[ScoreEvery(evaluator, args.every, args.out, args.name)],
        default_root_dir=str(args.out / args.name),
    )  # fmt: skip
    trainer.fit(model, datamodule=data)


if __name__ == "__main__":
    main()
