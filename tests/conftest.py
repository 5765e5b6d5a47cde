"""Test-suite wide settings: offline, headless, quiet and deterministic."""

import os
import warnings

# Set before anything imports matplotlib / huggingface_hub.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Two cores: more intra-op threads than cores only adds contention. An explicit OMP_NUM_THREADS wins: CI reruns
# the numeric tests single-threaded (.ci/run) to catch tolerances that only hold for one reduction order.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state, so results do not depend on which tests ran before."""
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Keep every cache the library or its dependencies write out of the user's home directory."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("LIGHTNING_GEN_CACHE", str(cache / "lightning_gen"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*litlogger.*")
