"""Two CPU processes (gloo, ddp_spawn): each generates its share, states are reduced, values match one process."""

from __future__ import annotations

import pytest
from _metrics_fixtures import TinyDataModule, TinyFeatures, TinyGenerativeModule

import lightning.pytorch as pl
from lightning_gen.metrics import FIDCallback

LOGGED = ("val/fid", "val/is", "val/is_std", "val/kid", "val/kid_std")


def run(tmp_path, devices: int, explode: bool = False) -> dict[str, float]:
    # 40 samples in batches of 16 make 3 batches: one process gets 1, the other 2; 40 real images are split
    # 20/20. lr=0 keeps the model identical to the single-process run.
    callback = FIDCallback(
        kid=True,
        inception_score=True,
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
        strategy="ddp_spawn" if devices > 1 else "auto",
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
    return {name: float(trainer.callback_metrics[name]) for name in LOGGED}


@pytest.mark.timeout(240)
def test_two_processes_give_the_single_process_values_with_and_without_cached_real_statistics(tmp_path):
    single = run(tmp_path / "single", devices=1)
    distributed = run(tmp_path / "ddp", devices=2)
    # The second distributed run reads the real statistics from the cache written by the first (the real
    # dataset raises if read); process 0 loads them, and they must count once in the reduction.
    cached = run(tmp_path / "ddp", devices=2, explode=True)
    for name in LOGGED:
        # Logged values are float32; the float64 results differ only in summation order.
        assert distributed[name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), name
        assert cached[name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), name
    assert single["val/fid"] > 0 and single["val/is"] > 1
