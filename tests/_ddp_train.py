"""Trains the library's modules on 2 CPU processes (gloo) the way a user would, and records what each rank ends with.

Run as a script by tests/test_ddp.py, either directly (Lightning's DDP launcher re-executes this file for
rank 1) or under ``torchrun --nproc_per_node 2`` (Lightning then reads torchrun's environment):

    python tests/_ddp_train.py OUT_DIR [CONFIG ...]

Each rank writes ``OUT_DIR/rank{r}.json`` with, per config: the strategy and its DDP wrappers as seen
during training, a hash of every parameter (EMA copy included), the counters, and the elements each
network's DDP wrapper all-reduced (counted by a comm hook that then does the ordinary all-reduce).
The ranks build their modules from different seeds, so agreeing at the end shows that DDP synchronised them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.strategies import DDPStrategy
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from lightning_gen import VAE, GANModule, MultiModelDDPStrategy, ShapesDataModule

warnings.filterwarnings("ignore")

# Count the SIGTERM broadcasts Lightning's training loop makes (MultiModelDDPStrategy thins them out).
SIGTERM_BROADCASTS = {"count": 0}
_lightning_sigterm_check = _TrainingEpochLoop._broadcast_sigterm_tensor


def _counted_sigterm_check(loop: _TrainingEpochLoop) -> None:
    SIGTERM_BROADCASTS["count"] += 1
    _lightning_sigterm_check(loop)


_TrainingEpochLoop._broadcast_sigterm_tensor = _counted_sigterm_check

# 32 images / 2 ranks / 4 per batch = 4 batches per rank: with n_critic=2, 4 critic and 2 generator updates.
NUM_IMAGES, BATCH_SIZE = 32, 4


def counting_allreduce(counter, bucket):  # no annotations: DDP checks them, and they would be strings here
    """DDP comm hook: count the elements of the bucket, then all-reduce it as DDP would."""
    counter["elements"] += bucket.buffer().numel()
    return default_hooks.allreduce_hook(None, bucket)


def counting_strategy(names: list[str], strategy_class: type = DDPStrategy) -> tuple[DDPStrategy, dict]:
    counters = {name: {"elements": 0} for name in names}
    return strategy_class(ddp_comm_hook=counting_allreduce, ddp_comm_state=counters), counters


def build(config: str):
    """(module, strategy, precision, comm counters or None) for one config."""
    gan = dict(image_size=16, latent_dim=8, width=8)
    gan_networks = ["generator", "discriminator"]
    if config == "bce":  # the plain string users write
        return GANModule(**gan), "ddp", "32-true", None
    if config == "wgan_gp_ema":
        strategy, counters = counting_strategy(gan_networks)
        return GANModule(**gan, loss="wgan-gp", n_critic=2, ema_decay=0.9), strategy, "32-true", counters
    if config == "r1":  # MultiModelDDPStrategy passed directly; EMA statistics recomputed for the averaged weights
        strategy, counters = counting_strategy(gan_networks, MultiModelDDPStrategy)
        return GANModule(**gan, r1_weight=1.0, ema_decay=0.9, ema_batchnorm="recompute"), strategy, "32-true", counters
    if config == "bf16":
        # Lightning turns "16-mixed" into "bf16-mixed" on CPU (fp16 autocast needs CUDA), so bf16 is what runs here.
        strategy, counters = counting_strategy(gan_networks)
        return GANModule(**gan, ema_decay=0.9, ema_batchnorm="copy"), strategy, "bf16-mixed", counters
    if config == "vae_gan":
        strategy, counters = counting_strategy(["encoder", "decoder", "discriminator"])
        return VAE(image_size=16, latent_dim=4, width=8, adversarial_weight=0.1), strategy, "32-true", counters
    raise ValueError(f"unknown config {config!r}")


class RecordDuringFit(L.Callback):
    """Records the strategy's wrappers while they exist (the strategy drops them at teardown)."""

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seen = {
            "state_dict_keys": list(module.state_dict()),
            "strategy": type(trainer.strategy).__name__,
            "model_is_module": trainer.strategy.model is module,
            "wrappers": {
                name: {
                    "type": type(wrapper).__name__,
                    "wraps_network": wrapper.module is getattr(module, name),
                    "find_unused_parameters": wrapper.find_unused_parameters,
                    "static_graph": wrapper.static_graph,
                }
                for name, wrapper in module._ddp_wrappers.items()
            },
        }
        with trainer.strategy.block_backward_sync():  # what gradient accumulation would use
            self.seen["no_sync_blocks_all"] = all(not w.require_backward_grad_sync for w in module._ddp_wrappers.values())


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def run(config: str, rank: int, out_dir: Path) -> dict:
    torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must make them agree
    module, strategy, precision, counters = build(config)
    initial = {name: digest(p) for name, p in module.named_parameters()}
    keys_before_fit = list(module.state_dict())
    data = ShapesDataModule(image_size=16, num_images=NUM_IMAGES, batch_size=BATCH_SIZE, val_fraction=0.0, seed=0)
    record = RecordDuringFit()
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=strategy, precision=precision, max_epochs=1, limit_val_batches=0,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=config == "wgan_gp_ema", enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(out_dir / config), callbacks=[record],
    )
    SIGTERM_BROADCASTS["count"] = 0
    trainer.fit(module, datamodule=data)
    sizes = {name: sum(p.numel() for p in net.parameters() if p.requires_grad) for name, net in module.ddp_networks().items()}
    return {
        **record.seen,
        "world_size": trainer.world_size,
        "wrappers_after_fit": len(module._ddp_wrappers),
        "state_dict_keys_before_fit": keys_before_fit,
        "checkpoint": trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None,
        "generator_step": module.generator_step,
        "discriminator_step": getattr(module, "discriminator_step", None),
        # Parameters only: BatchNorm running statistics stay per rank between DDP's buffer broadcasts.
        "initial": initial,
        "params": {name: digest(p) for name, p in module.named_parameters()},
        # Buffers of the live networks are each rank's own; the EMA generator's must agree (GANModule's ema_batchnorm).
        "generator_buffers": {name: digest(b) for name, b in module.generator.named_buffers()} if hasattr(module, "generator") else None,
        "ema_buffers": {name: digest(b) for name, b in ema.module.named_buffers()} if (ema := getattr(module, "generator_ema", None)) else None,
        "sizes": sizes,
        "allreduced": {name: c["elements"] for name, c in counters.items()} if counters else None,
        "noise": torch.randn(3, generator=module._noise_rng).tolist(),
        "batches": trainer.fit_loop.epoch_loop.batch_progress.total.completed,
        "sigterm_broadcasts": SIGTERM_BROADCASTS["count"],
    }


def main(out_dir: Path, configs: list[str]) -> None:
    # Set by torchrun, and by Lightning's launcher for the processes it starts; unset in the first process.
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))
    results = {config: run(config, rank, out_dir) for config in configs}
    (out_dir / f"rank{rank}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or ["bce", "wgan_gp_ema", "r1", "bf16", "vae_gan"])
