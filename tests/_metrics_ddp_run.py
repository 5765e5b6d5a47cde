"""FIDCallback under Trainer(strategy="ddp", devices=2) on CPU, as a user launches it.

Run as a script by tests/test_metrics_ddp.py (Lightning's DDP launcher re-executes this file for rank 1);
rank 0 writes the logged values to OUT_DIR/values.json. ``run`` is also imported by the test for the
single-process reference. Judging by the values written, not by exit codes, keeps the test about the
metric: a gloo teardown hiccup while a process exits says nothing about the numbers.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import lightning.pytorch as pl  # noqa: E402
from _metrics_fixtures import TinyDataModule, TinyFeatures, TinyGenerativeModule  # noqa: E402

from lightning_gen.metrics import FIDCallback  # noqa: E402

LOGGED = (
    "val/fid", "val/is", "val/is_std", "val/kid", "val/kid_std", "val/precision", "val/recall", "val/density", "val/coverage",
)


def run(tmp_path: Path, devices: int, explode: bool = False) -> tuple[dict[str, float], int]:
    """Train 2 steps with the callback; return the logged values and this process's global rank."""
    # 40 samples in batches of 16 make 3 batches: one process gets 1, the other 2; 40 real images are split
    # 20/20. lr=0 keeps the model identical to the single-process run.
    callback = FIDCallback(
        kid=True,
        inception_score=True,
        precision_recall=True,
        feature_extractor=TinyFeatures(),
        num_samples=40,
        batch_size=16,
        kid_subset_size=20,
        kid_subsets=5,
        split="real",
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    trainer = pl.Trainer(
        callbacks=[callback],
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(TinyGenerativeModule(lr=0.0), datamodule=TinyDataModule(explode=explode))
    return {name: float(trainer.callback_metrics[name]) for name in LOGGED}, trainer.global_rank


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    out_dir, explode = Path(sys.argv[1]), sys.argv[2] == "explode"
    values, rank = run(out_dir, devices=2, explode=explode)
    (out_dir / f"values_rank{rank}.json").write_text(json.dumps(values))
