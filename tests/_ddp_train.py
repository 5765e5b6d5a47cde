"""Trains GANModule and VAE with Trainer(strategy="ddp", devices=2) on CPU (gloo), as a user would.

Run as a script by tests/test_ddp.py: Lightning's DDP launcher re-executes this file for rank 1.
Each rank writes what it ended with to OUT_DIR so the test can compare the ranks.
"""

import json
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_gen import VAE, GANModule

warnings.filterwarnings("ignore")


def main(out_dir: Path) -> None:
    images = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    loader = DataLoader(TensorDataset(images), batch_size=4)
    results = {}
    for name, model in {
        "gan": GANModule(image_size=16, latent_dim=8, width=8, n_critic=2, ema_decay=0.9),
        "vae": VAE(image_size=16, latent_dim=4, width=8, adversarial_weight=0.1),
    }.items():
        L.seed_everything(0)
        trainer = L.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(out_dir),
        )
        trainer.fit(model, loader)
        # Parameters only: BatchNorm running statistics are per rank until DDP broadcasts rank 0's at the
        # next forward (and checkpoints are written by rank 0).
        state = {k: v.double().sum().item() for k, v in model.named_parameters()}
        results[name] = {
            "generator_step": model.generator_step,
            "global_step": trainer.global_step,
            "find_unused_parameters": trainer.strategy._ddp_kwargs.get("find_unused_parameters"),
            "world_size": trainer.world_size,
            "state": state,
            "noise": torch.randn(3, generator=model._noise_rng).tolist(),
        }
    (out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
