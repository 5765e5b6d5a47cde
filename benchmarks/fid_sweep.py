"""The FID sweep committed in ``benchmarks/sweep_shapes/``: GAN losses x n_critic x EMA, and the VAE, on shapes.

Twelve GAN runs (loss bce / hinge / wgan-gp, n_critic 1 and 2, EMA off and on) and the VAE train from the zoo
recipes with one shared budget and are evaluated with one protocol, by ``lightning-gen sweep``. The budget is
sized for a 2-core CPU (about half an hour, most of it in Inception): 16 px images, width 16, batches of 64,
300 generator steps, FID / IS / KID after 100, 200 and 300 steps from 200 samples against 500 cached real
images. At that budget the models are far from converged, and the EMA decay is 0.99 rather than the recipe's
0.999, which after 300 steps would still be mostly the initial weights. Run folders (checkpoints, sample
grids, logs) go to ``runs/sweep_shapes/`` (git-ignored); the tables and plots to ``benchmarks/sweep_shapes/``.

Offline the FID Inception weights cannot be downloaded, so unless ``LIGHTNING_GEN_INCEPTION_WEIGHTS`` names the
real file, this script writes a *random-weight* Inception file (the FID Inception architecture, seeded random
initialisation, batch-norm statistics calibrated as in the metrics tests) and uses that. Such numbers rank the
runs of this sweep against each other but are not comparable with published FIDs; ``results.md`` says so and
records the file's sha256.

Run (extra arguments go to ``lightning-gen sweep``, e.g. ``--report-only``):

    .venv/bin/python benchmarks/fid_sweep.py
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

# ---- settings -----------------------------------------------------------------------------------------------
CONFIGS = ["zoo/dcgan-shapes32/recipe.yaml", "zoo/vae-shapes32/recipe.yaml"]
GRID = [
    "model.loss=bce,hinge,wgan-gp",
    "model.n_critic=1,2",
    "model.ema_decay=null,0.99",
    # One value each: shrink both recipes to the CPU budget (a key applies to the configs whose class takes it).
    "model.image_size=16",
    "data.image_size=16",
    "model.width=16",
    "data.num_images=4000",
    "model.kl_warmup_steps=100",  # VAE only: the recipe's 500 would outlast the budget
]
SEEDS = "0"
GENERATOR_STEPS = 300
EVAL_EVERY = 100
NUM_SAMPLES = 200
NUM_REAL = 500
OUT = "benchmarks/sweep_shapes"
RUNS_DIR = "runs/sweep_shapes"
RANDOM_WEIGHTS = Path("runs/random_inception/inception_random_seed0.pth")
RANDOM_WEIGHTS_SEED = 0
# --------------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]

RANDOM_WEIGHTS_NOTE = """
## How the extractor weights were made

The weights file is a stand-in written by `benchmarks/fid_sweep.py` because the real one cannot be downloaded
offline: torch-fidelity's FID Inception-v3 architecture with a seeded random initialisation (seed {seed}), its
batch-norm statistics calibrated on a fixed batch of synthetic images and its classifier scaled so that the softmax
is not uniform (`make_random_inception_weights` in `tests/_metrics_fixtures.py`). Random features put FID on an
arbitrary scale (hundreds here); only the order of the runs means something.
"""
TIMING_NOTE = """
## Timings

Images/s and wall time are measured on whatever else the machine was doing at the time. On a CPU shared with
other jobs they vary between runs by far more than the settings explain; `benchmarks/train_throughput.py` is the
throughput benchmark.
"""


def random_inception_weights(path: Path, seed: int) -> Path:
    """Create (once) the random-weight stand-in for the FID Inception file, with the metrics tests' helper."""
    if not path.is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from _metrics_fixtures import make_random_inception_weights

        path.parent.mkdir(parents=True, exist_ok=True)
        make_random_inception_weights(path, seed=seed)
    return path


def main(extra: list[str]) -> int:
    os.chdir(ROOT)
    from lightning_gen import sweep
    from lightning_gen.metrics import INCEPTION_WEIGHTS_ENV

    weights = os.environ.get(INCEPTION_WEIGHTS_ENV) or str(
        random_inception_weights(RANDOM_WEIGHTS, RANDOM_WEIGHTS_SEED)
    )
    argv = [arg for config in CONFIGS for arg in ("--config", config)]
    argv += [arg for entry in GRID for arg in ("--grid", entry)]
    argv += [
        "--seeds", SEEDS, "--generator-steps", str(GENERATOR_STEPS), "--eval-every", str(EVAL_EVERY),
        "--num-samples", str(NUM_SAMPLES), "--num-real", str(NUM_REAL), "--weights", weights, "--no-download",
        "--accelerator", "cpu", "--out", OUT, "--runs-dir", RUNS_DIR, *extra,
    ]  # fmt: skip
    print("lightning-gen sweep " + shlex.join(argv), flush=True)
    started = time.perf_counter()
    code = sweep.main(argv)
    print(f"sweep wall time: {time.perf_counter() - started:.0f} s (exit code {code})", flush=True)
    report = Path(OUT) / "results.md"
    if report.is_file() and "--shard" not in extra and "--dry-run" not in extra:
        notes = RANDOM_WEIGHTS_NOTE.format(seed=RANDOM_WEIGHTS_SEED) if weights == str(RANDOM_WEIGHTS) else ""
        report.write_text(report.read_text() + notes + TIMING_NOTE)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
