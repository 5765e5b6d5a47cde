"""Two CPU processes (gloo) train both modules with plain strategy="ddp"; the ranks must agree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("_ddp_train.py")


@pytest.mark.timeout(300)
def test_plain_ddp_trains_both_modules_in_two_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent.parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for name in ("gan", "vae"):
        a, b = rank0[name], rank1[name]
        assert a["world_size"] == 2
        assert a["find_unused_parameters"] is True  # turned on for the user by the module
        # 32 images / 4 per batch / 2 ranks = 4 batches per rank.
        assert a["generator_step"] == b["generator_step"] == 4
        # Gradients were all-reduced: every parameter (EMA copy included) is identical across ranks.
        assert a["state"] == b["state"]
        assert any("generator_ema" in k for k in a["state"]) or name == "vae"
        assert a["noise"] != b["noise"]  # but each rank draws its own noise
    assert "enabled DDP find_unused_parameters=True" in proc.stderr + proc.stdout


def test_sync_batchnorm_conversion_keeps_the_state_dict_layout():
    # SyncBatchNorm only runs on GPUs; on CPU we check Trainer(sync_batchnorm=True)'s conversion is lossless.
    from lightning_gen import GANModule

    model = GANModule(image_size=16, latent_dim=8, width=8, ema_decay=0.9)
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(GANModule(image_size=16, latent_dim=8, width=8, ema_decay=0.9))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.generator.modules())
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.generator_ema.modules())
    converted.load_state_dict(model.state_dict())  # strict: same keys and shapes
