"""The sweep committed in ``benchmarks/sweep_shapes/``: GAN losses and the VAE on the shapes data, ranked by FSD.

Two ``lightning-gen sweep`` commands, sized for a 2-core CPU shared with other jobs:

1. a grid: the DCGAN recipe with loss bce / hinge / wgan-gp x n_critic 1 / 2 x EMA off / 0.99, and the VAE
   recipe, each with seeds 0 and 1 (26 trials), both shrunk to 16 px, width 16, 2,000 images, batches of 64 and
   200 generator steps;
2. a TPE search of 4 generator / discriminator learning-rate pairs for the bce DCGAN with EMA 0.99 (seed 0),
   with the median pruner.

Every trial is evaluated after 100 and 200 generator steps by the shapes evaluator (``--metrics shapes``):
Fréchet Shapes Distance (the objective), validity and factor coverage, from 500 samples (the same latents for
every trial) against 500 real images. At this budget no model is converged; the point is a ranking whose
differences can be checked against the seed spread. The studies (Optuna journals) and run folders go to
``runs/sweep_shapes/`` (git-ignored); the reports to ``benchmarks/sweep_shapes/`` and ``.../lr_search/``.

Run (extra arguments go to both commands, e.g. ``--report-only``):

    .venv/bin/python benchmarks/sweep_shapes/run_sweep.py
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

# ---- settings -----------------------------------------------------------------------------------------------
CONFIGS = ["zoo/dcgan-shapes32/recipe.yaml", "zoo/vae-shapes32/recipe.yaml"]
SHRINK = [  # one value each: a key applies to the configs whose class takes it
    "model.image_size=16",
    "data.image_size=16",
    "model.width=16",
    "data.num_images=2000",
    "model.kl_warmup_steps=100",  # VAE only: the recipe's 500 would outlast the budget
]
# EMA 0.99 rather than the recipe's 0.999, which after 200 steps would still be mostly the initial weights.
GRID = ["model.loss=bce,hinge,wgan-gp", "model.n_critic=1,2", "model.ema_decay=null,0.99"]
SEARCH = ["model.lr_g=5e-5:2e-3:log", "model.lr_d=5e-5:2e-3:log"]
SEARCH_TRIALS = 4
SEEDS = "0,1"
GENERATOR_STEPS = 200
EVAL_EVERY = 100
NUM_SAMPLES = 500
NUM_REAL = 500
WORKERS = 2
OUT = "benchmarks/sweep_shapes"
RUNS = "runs/sweep_shapes"
# --------------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def common(out: str, study: str) -> list[str]:
    return [
        "--generator-steps", str(GENERATOR_STEPS), "--eval-every", str(EVAL_EVERY), "--metrics", "shapes",
        "--objective", "fsd", "--num-samples", str(NUM_SAMPLES), "--num-real", str(NUM_REAL),
        "--accelerator", "cpu", "--workers", str(WORKERS), "--out", out, "--runs-dir", f"{RUNS}/{study}",
        "--storage", f"{RUNS}/{study}.journal",
    ]  # fmt: skip


def main(extra: list[str]) -> int:
    os.chdir(ROOT)
    from lightning_gen.cli.sweep import main as sweep_main

    grid = [arg for config in CONFIGS for arg in ("--config", config)]
    grid += [arg for entry in [*GRID, *SHRINK] for arg in ("--grid", entry)]
    grid += ["--seeds", SEEDS, *common(OUT, "grid"), *extra]
    search = ["--config", CONFIGS[0], *(arg for entry in SEARCH for arg in ("--search", entry))]
    fixed = [entry for entry in SHRINK if not entry.startswith("model.kl_")] + ["model.ema_decay=0.99"]
    search += [arg for entry in fixed for arg in ("--grid", entry)]
    search += ["--trials", str(SEARCH_TRIALS), "--seeds", "0", "--pruner", "median", "--pruner-startup-trials", "2"]
    search += [*common(f"{OUT}/lr_search", "lr_search"), *extra]
    codes = []
    for argv in (grid, search):
        print("lightning-gen sweep " + shlex.join(argv), flush=True)
        started = time.perf_counter()
        codes.append(sweep_main(argv))
        print(f"wall time: {time.perf_counter() - started:.0f} s (exit code {codes[-1]})", flush=True)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
