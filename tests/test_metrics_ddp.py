"""Two CPU processes (gloo, strategy="ddp"): each generates its share, states are reduced, values match one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _metrics_ddp_run import LOGGED, run

SCRIPT = Path(__file__).with_name("_metrics_ddp_run.py")


def run_two_processes(out_dir: Path, explode: bool = False) -> dict[str, dict[str, float]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("values_rank*.json"):  # the cached run reuses the folder (and its cache)
        stale.unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out_dir), "explode" if explode else "plain"],
        env=env, capture_output=True, text=True, timeout=200,
    )
    written = sorted(out_dir.glob("values_rank*.json"))
    assert len(written) == 2, f"exit code {proc.returncode}\n{proc.stderr[-4000:]}"
    return {path.stem: json.loads(path.read_text()) for path in written}


@pytest.mark.timeout(240)
def test_two_processes_give_the_single_process_values_with_and_without_cached_real_statistics(tmp_path):
    single, _ = run(tmp_path / "single", devices=1)
    distributed = run_two_processes(tmp_path / "ddp")
    # The second distributed run reads the real statistics from the cache written by the first (the real
    # dataset raises if read); process 0 loads them, and they must count once in the reduction.
    cached = run_two_processes(tmp_path / "ddp", explode=True)
    for values in (*distributed.values(), *cached.values()):  # every rank logs the same, reduced value
        for name in LOGGED:
            # Logged values are float32; the float64 results differ only in summation order.
            assert values[name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), name
    assert single["val/fid"] > 0 and single["val/is"] > 1
    assert 0 < single["val/coverage"] < 1 and single["val/density"] > 0  # not trivial values to agree on
