"""Multi-process training: one DistributedDataParallel per network (MultiModelDDPStrategy), as users launch it.

The two-process runs use gloo on the CPU; SyncBatchNorm and fp16 autocast need CUDA, so their checks here
are limited to what the CPU can show (the conversion keeps the state-dict layout; bf16-mixed stands in for
16-mixed, which Lightning turns into bf16-mixed on the CPU).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy
from torch import nn

from lightning_gen import VAE, GANModule, MultiModelDDPStrategy, ShapesDataModule
from lightning_gen.strategies import _comm_states_per_network, _trainable_networks, adapt_strategy

SCRIPT = Path(__file__).with_name("_ddp_train.py")
ROOT = SCRIPT.parent.parent


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    for leaked in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT", "NODE_RANK"):  # from an in-process test
        env.pop(leaked, None)
    return env


def _run(command: list[str], out_dir: Path) -> tuple[dict, dict, str]:
    proc = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=420, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    rank0, rank1 = (json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1))
    return rank0, rank1, proc.stdout + proc.stderr


def _check_ranks_agree(a: dict, b: dict) -> None:
    assert a["world_size"] == b["world_size"] == 2
    assert a["initial"] != b["initial"]  # the ranks built different random weights...
    assert a["params"] == b["params"]  # ...and end with identical parameters (EMA copy included): all hashes equal
    assert a["params"] != a["initial"]  # training did change them
    assert a["noise"] != b["noise"]  # each rank draws its own noise


def _check_one_wrapper_per_network(result: dict, names: list[str]) -> None:
    assert result["strategy"] == "MultiModelDDPStrategy"
    assert result["model_is_module"]  # the LightningModule itself is not wrapped: the old single wrapper is gone
    assert list(result["wrappers"]) == names
    for wrapper in result["wrappers"].values():
        assert wrapper == {
            "type": "DistributedDataParallel", "wraps_network": True, "find_unused_parameters": False, "static_graph": False
        }
    assert result["no_sync_blocks_all"]  # block_backward_sync reaches every wrapper
    assert result["wrappers_after_fit"] == 0  # dropped at teardown
    assert result["state_dict_keys"] == result["state_dict_keys_before_fit"]  # unchanged while wrapped


@pytest.mark.timeout(480)
def test_two_processes_agree_and_each_backward_all_reduces_only_the_stepping_network(tmp_path):
    """bce (strategy="ddp"), wgan-gp n_critic=2 + EMA, R1 + EMA recomputing its BatchNorm statistics
    (MultiModelDDPStrategy passed), bf16-mixed + EMA copying them, VAE-GAN."""
    rank0, rank1, output = _run([sys.executable, str(SCRIPT), str(tmp_path)], tmp_path)
    assert "using MultiModelDDPStrategy" in output  # the info line for the plain "ddp" string
    assert "find_unused_parameters=True" not in output  # the old adaptation is gone
    gan = ["generator", "discriminator"]
    expected_steps = {"bce": (4, 4), "wgan_gp_ema": (2, 4), "r1": (4, 4), "bf16": (4, 4), "vae_gan": (4, None)}
    for config, (generator_steps, discriminator_steps) in expected_steps.items():
        a, b = rank0[config], rank1[config]
        _check_ranks_agree(a, b)
        _check_one_wrapper_per_network(a, gan if config != "vae_gan" else ["encoder", "decoder", "discriminator"])
        # 4 batches per rank; the generator steps every n_critic-th batch.
        assert (a["generator_step"], a["discriminator_step"]) == (generator_steps, discriminator_steps)
        assert any("generator_ema" in name for name in a["params"]) == (config in ("wgan_gp_ema", "r1", "bf16"))
        if a["ema_buffers"] is not None:
            # The live generators' BatchNorm statistics differ per rank; every rank ends with the same EMA
            # statistics, whichever the convention: broadcast from rank 0 at the epoch end ("average" here,
            # "copy" under bf16) or recomputed from identical averaged weights and seeded latents (r1).
            assert a["generator_buffers"] != b["generator_buffers"]
            assert a["ema_buffers"] == b["ema_buffers"], config
        # Lightning's per-batch SIGTERM broadcast (a collective and a host read) runs on the first batch only
        # here (every 50th), on both ranks alike.
        assert a["batches"] == 4 and a["sigterm_broadcasts"] == b["sigterm_broadcasts"] == 1

    # The comm hook counted what each wrapper all-reduced: each network only in its own updates.
    for config in ("wgan_gp_ema", "r1", "bf16"):
        a = rank0[config]
        size_g, size_d = a["sizes"]["generator"], a["sizes"]["discriminator"]
        n_critic = 2 if config == "wgan_gp_ema" else 1
        assert a["allreduced"] == {"generator": a["generator_step"] * size_g, "discriminator": a["discriminator_step"] * size_d}
        per_generator_update = sum(a["allreduced"].values()) / a["generator_step"]
        assert per_generator_update == size_g + n_critic * size_d
        # One wrapper around the whole module all-reduced |G| + |D| on each of the n_critic + 1 backwards.
        assert per_generator_update < (n_critic + 1) * (size_g + size_d)
        assert rank1[config]["allreduced"] == a["allreduced"]
    vae = rank0["vae_gan"]
    assert sum(vae["allreduced"].values()) / vae["generator_step"] == sum(vae["sizes"].values())  # |enc|+|dec|+|D|


@pytest.mark.timeout(300)
def test_torchrun_launch_with_two_processes(tmp_path):
    """Lightning picks up torchrun's environment (the path multi-node and SLURM launches take too)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(SCRIPT), str(tmp_path), "wgan_gp_ema",
    ]
    rank0, rank1, _ = _run(command, tmp_path)
    a, b = rank0["wgan_gp_ema"], rank1["wgan_gp_ema"]
    _check_ranks_agree(a, b)
    _check_one_wrapper_per_network(a, ["generator", "discriminator"])
    assert sum(a["allreduced"].values()) / a["generator_step"] == a["sizes"]["generator"] + 2 * a["sizes"]["discriminator"]
    # Rank 0 wrote a checkpoint with the single-device layout, which loads strictly into a fresh module.
    fresh = GANModule(image_size=16, latent_dim=8, width=8, loss="wgan-gp", n_critic=2, ema_decay=0.9)
    assert a["state_dict_keys"] == list(fresh.state_dict())
    restored = GANModule.load_from_checkpoint(a["checkpoint"], map_location="cpu")
    assert restored.generator_step == 2 and list(restored.state_dict()) == list(fresh.state_dict())


# ------------------------------------------------------------------------------------------------------
# Strategy selection (no processes needed).
@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn", "ddp_notebook", "ddp_find_unused_parameters_true"])
def test_plain_ddp_strategies_are_adapted_keeping_their_settings(strategy):
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, logger=False)
    before = (trainer.strategy._start_method, dict(trainer.strategy._ddp_kwargs), trainer.strategy.cluster_environment)
    adapted = adapt_strategy(trainer.strategy, "GANModule")
    assert adapted is trainer.strategy and type(adapted) is MultiModelDDPStrategy
    assert (adapted._start_method, adapted._ddp_kwargs, adapted.cluster_environment) == before


def test_multi_model_strategy_and_its_subclasses_are_used_as_given_and_single_device_is_untouched():
    class Tuned(MultiModelDDPStrategy):
        pass

    for strategy in (MultiModelDDPStrategy(), Tuned(), SingleDeviceStrategy("cpu")):
        kind = type(strategy)
        assert adapt_strategy(strategy, "GANModule") is strategy and type(strategy) is kind


class CustomDDP(DDPStrategy):
    pass


@pytest.mark.parametrize("strategy", [CustomDDP(), FSDPStrategy()], ids=["ddp-subclass", "fsdp"])
def test_other_parallel_strategies_are_refused_for_fit_naming_the_fix(strategy):
    with pytest.raises(ValueError, match=rf"GANModule cannot train with {type(strategy).__name__}.*subclass MultiModelDDPStrategy"):
        adapt_strategy(strategy, "GANModule", "fit")
    assert adapt_strategy(strategy, "GANModule", "validate") is strategy  # evaluation wraps nothing


def test_custom_strategy_fails_in_setup_before_the_first_step(tmp_path):
    model = GANModule(image_size=16, latent_dim=8, width=8)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = L.Trainer(
        accelerator="cpu", devices=1, strategy=CustomDDP(), max_steps=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
    )
    environ = dict(os.environ)
    try:
        with pytest.raises(ValueError, match="GANModule cannot train with CustomDDP"):
            trainer.fit(model, datamodule=ShapesDataModule(image_size=16, num_images=16, batch_size=4, val_fraction=0.0))
    finally:  # Lightning leaves the (1-process) process group and its launch variables behind
        if dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
    assert trainer.global_step == 0 and model.generator_step == 0
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


# ------------------------------------------------------------------------------------------------------
# What the strategy checks before wrapping.
def test_ddp_networks_cover_every_trainable_parameter_once():
    model = GANModule(image_size=16, latent_dim=8, width=8, ema_decay=0.9)
    assert list(_trainable_networks(model)) == ["generator", "discriminator"]  # the EMA copy is not trained
    vae = VAE(image_size=16, latent_dim=4, width=8)
    assert list(_trainable_networks(vae)) == ["encoder", "decoder"]

    model.extra = nn.Linear(2, 2)  # trained, but in no network: its gradients would never be averaged
    with pytest.raises(ValueError, match=r"trainable parameters in no network of ddp_networks\(\): \['extra.weight'"):
        _trainable_networks(model)

    shared = GANModule(image_size=16, latent_dim=8, width=8)
    shared.ddp_networks = lambda: {"generator": shared.generator, "copy": shared.generator}
    with pytest.raises(ValueError, match="copy and generator share parameters"):
        _trainable_networks(shared)

    with pytest.raises(TypeError, match=r"needs LightningModule to define ddp_networks\(\)"):
        _trainable_networks(L.LightningModule())


def test_per_model_comm_hook_state_must_be_given_per_network():
    from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState

    names = ["generator", "discriminator"]
    assert _comm_states_per_network(None, names) == {"generator": None, "discriminator": None}
    per_network = {"generator": PowerSGDState(None), "discriminator": PowerSGDState(None)}
    assert _comm_states_per_network(per_network, names) == per_network
    with pytest.raises(ValueError, match=r"ddp_comm_state=\{'generator': PowerSGDState\(...\), 'discriminator'"):
        _comm_states_per_network(PowerSGDState(None), names)


def test_sync_batchnorm_conversion_keeps_the_state_dict_layout():
    # SyncBatchNorm only runs on GPUs; on CPU we check Trainer(sync_batchnorm=True)'s conversion is lossless.
    model = GANModule(image_size=16, latent_dim=8, width=8, ema_decay=0.9)
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(GANModule(image_size=16, latent_dim=8, width=8, ema_decay=0.9))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.generator.modules())
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.generator_ema.modules())
    converted.load_state_dict(model.state_dict())  # strict: same keys and shapes
    assert list(_trainable_networks(converted)) == ["generator", "discriminator"]  # the converted networks get wrapped
