"""Multi-process GAN training: GANModule under ``strategy="ddp"`` vs the same DDP loop written by hand.

Three ways to train the same DCGAN networks, with the same Adam settings and per-rank batches, run in the
same processes and interleaved (the order rotates every round, so a neighbour's load or warm caches do
not favour one side):

* ``two wrappers``: hand-written, the generator and the discriminator each in its own
  ``DistributedDataParallel`` (the StudioGAN way). This is the reference.
* ``GANModule``: ``Trainer(strategy="ddp")``, which the module adapts to ``MultiModelDDPStrategy`` (the
  same two wrappers, behind Lightning). Target: GANModule / two wrappers >= 0.97.
* ``one wrapper``: hand-written, one ``DistributedDataParallel`` around both networks with
  ``find_unused_parameters=True``: what GANModule did before, all-reducing |G| + |D| on every backward.

Images/s are global (all processes), over the timed batches of rank 0 (the ranks run in lockstep).

    python benchmarks/ddp_throughput.py                  # starts 2 processes with torchrun: gloo on CPU
    python benchmarks/ddp_throughput.py --batches 10 --rounds 2
    python benchmarks/ddp_throughput.py --device cuda --precision bf16-mixed --channels-last   # NCCL, 1 GPU per process

On CPU, torchrun gives each process one thread (OMP_NUM_THREADS=1), which suits 2 processes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from lightning_gen import GANModule
from lightning_gen.networks import DCGANDiscriminator, DCGANGenerator

IMAGE_SIZE = 32
BATCH_SIZE = 32  # per process
WIDTH = 32
LATENT_DIM = 100
WARMUP_BATCHES = 5
TIMED_BATCHES = 20
ROUNDS = 6  # a multiple of 3, so that each side goes first, second and third equally often
LOG_EVERY = 50  # the hand-written loops read their losses as often as Lightning logs by default


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="processes (one GPU each under --device cuda)")
    parser.add_argument("--batches", type=int, default=TIMED_BATCHES, help="timed batches per process and run")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per process and batch")
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), default="32-true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="nn.Module.compile() on both networks, all sides")
    return parser.parse_args()


# --------------------------------------------------------------------------------------------------
# Shared set-up.
def make_images(args: argparse.Namespace, world_size: int) -> torch.Tensor:
    count = (WARMUP_BATCHES + args.batches) * args.batch_size * world_size
    return torch.rand(count, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def make_networks(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    generator = DCGANGenerator(args.image_size, 3, LATENT_DIM, args.width).to(device)
    discriminator = DCGANDiscriminator(args.image_size, 3, args.width).to(device)
    for network in (generator, discriminator):
        if args.channels_last:
            network.to(memory_format=torch.channels_last)
        if args.compile:
            network.compile()
    return generator, discriminator


def adam(params, device: torch.device) -> torch.optim.Adam:
    """The Adam GANModule builds by default: fused where torch has a kernel for the device."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        fused = device.type in _get_fused_kernels_supported_devices()
    except ImportError:  # older torch
        fused = device.type == "cuda"
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999), **({"fused": True} if fused else {"foreach": True}))


def autocast(args: argparse.Namespace, device: torch.device):
    if args.precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rank_batches(images: torch.Tensor, args: argparse.Namespace, rank: int, world_size: int, device: torch.device):
    """This rank's batches, sliced as a DistributedSampler without shuffling would."""
    mine = images[rank::world_size].contiguous()  # as a DataLoader would collate them
    for start in range(0, len(mine), args.batch_size):
        batch = mine[start : start + args.batch_size].to(device, non_blocking=True)
        yield batch.contiguous(memory_format=torch.channels_last) if args.channels_last else batch


def ddp(module: nn.Module, device: torch.device, **kwargs) -> DistributedDataParallel:
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None, **kwargs)


class Stopwatch:
    """Wall-clock and CPU seconds (this process, all its threads) between ``start()`` and the last ``stop()``.

    CPU seconds leave out the time a process waits for the other rank or for a free core, so on a
    machine shared with other jobs they compare the sides' overhead with much less noise than wall time.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def _now(self) -> tuple[float, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter(), time.process_time()

    def start(self) -> None:
        self.started = self._now()

    def stop(self) -> tuple[float, float]:
        wall, cpu = self._now()
        self.seconds = (wall - self.started[0], cpu - self.started[1])
        return self.seconds


def timed(loop, device: torch.device) -> tuple[float, float]:
    """Run ``loop`` (a generator yielding once per batch); (wall, CPU) seconds of the batches after the warm-up."""
    watch = Stopwatch(device)
    for i, _ in enumerate(loop):
        if i == WARMUP_BATCHES - 1:
            watch.start()
    return watch.stop()


# --------------------------------------------------------------------------------------------------
# The three sides.
def two_wrappers(images, args, rank, world_size, device) -> tuple[float, float]:
    generator, discriminator = make_networks(args, device)
    generator_ddp, discriminator_ddp = ddp(generator, device), ddp(discriminator, device)
    opt_g, opt_d = adam(generator.parameters(), device), adam(discriminator.parameters(), device)

    def loop():
        for i, real in enumerate(rank_batches(images, args, rank, world_size, device)):
            z = torch.randn(real.shape[0], LATENT_DIM, device=device)
            with autocast(args, device):
                with torch.no_grad():
                    fake = generator(z)  # the idle network is called directly
                discriminator.requires_grad_(True)
                d_loss = F.softplus(-discriminator_ddp(real)).mean() + F.softplus(discriminator_ddp(fake)).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            discriminator.requires_grad_(False)
            with autocast(args, device):
                g_loss = F.softplus(-discriminator(generator_ddp(torch.randn_like(z)))).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            if i % LOG_EVERY == 0:
                _ = d_loss.item(), g_loss.item()
            yield

    return timed(loop(), device)


class BothNetworks(nn.Module):
    """Both networks behind one forward, as one DDP wrapper around the whole LightningModule saw them."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator

    def forward(self, half: str, z: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        if half == "discriminator":
            with torch.no_grad():
                fake = self.generator(z)
            return F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake)).mean()
        return F.softplus(-self.discriminator(self.generator(z))).mean()


def one_wrapper(images, args, rank, world_size, device) -> tuple[float, float]:
    generator, discriminator = make_networks(args, device)
    both = ddp(BothNetworks(generator, discriminator), device, find_unused_parameters=True)
    opt_g, opt_d = adam(generator.parameters(), device), adam(discriminator.parameters(), device)

    def loop():
        for i, real in enumerate(rank_batches(images, args, rank, world_size, device)):
            z = torch.randn(real.shape[0], LATENT_DIM, device=device)
            discriminator.requires_grad_(True)
            with autocast(args, device):
                d_loss = both("discriminator", z, real)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            discriminator.requires_grad_(False)
            with autocast(args, device):
                g_loss = both("generator", torch.randn_like(z))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            if i % LOG_EVERY == 0:
                _ = d_loss.item(), g_loss.item()
            yield

    return timed(loop(), device)


class _Timer(L.Callback):
    def __init__(self, device: torch.device):
        self.watch = Stopwatch(device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Stop at the last batch: the epoch-end sample grid is not part of the training loop's throughput.
        if batch_idx == WARMUP_BATCHES - 1:
            self.watch.start()
        elif batch_idx >= WARMUP_BATCHES:
            self.watch.stop()


def gan_module(images, args, rank, world_size, device) -> tuple[float, float]:
    torch.manual_seed(0)
    model = GANModule(
        image_size=args.image_size, channels=3, latent_dim=LATENT_DIM, width=args.width,
        channels_last=args.channels_last, compile=args.compile,
    )
    timer = _Timer(device)
    trainer = L.Trainer(
        accelerator=device.type, devices=world_size, strategy="ddp", precision=args.precision, max_epochs=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer], default_root_dir=tempfile.mkdtemp(),
    )
    # Lightning shards the dataset with a DistributedSampler: the same slices rank_batches() takes.
    trainer.fit(model, DataLoader(TensorDataset(images), batch_size=args.batch_size))
    return timer.watch.seconds


SIDES = {"two wrappers": two_wrappers, "GANModule": gan_module, "one wrapper": one_wrapper}


# --------------------------------------------------------------------------------------------------
def report(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace, world_size: int, device: torch.device) -> None:
    generator, discriminator = make_networks(args, torch.device("cpu"))
    size_g = sum(p.numel() for p in generator.parameters())
    size_d = sum(p.numel() for p in discriminator.parameters())
    print(
        f"\ndevice={device.type} backend={dist.get_backend()} processes={world_size} threads/process="
        f"{torch.get_num_threads()} image={args.image_size}px batch/process={args.batch_size} width={args.width} "
        f"precision={args.precision} channels_last={args.channels_last} compile={args.compile} "
        f"timed batches={args.batches} rounds={args.rounds}"
    )
    print(f"|G| = {size_g:,}, |D| = {size_d:,}; all-reduced per batch: {size_g + size_d:,} elements with two wrappers, "
          f"{2 * (size_g + size_d):,} with one")
    reference = results["two wrappers"]
    for column, label in ((0, "wall"), (1, "CPU")):
        print(f"\n{label}-clock images/s (median of {args.rounds} rounds) and ratio to two wrappers (median of per-round ratios):")
        for name, values in results.items():
            # Ratios within each round (same minutes, same load), then their median: robust to a load that drifts.
            ratios = [v[column] / ref[column] for v, ref in zip(values, reference)]
            print(f"  {name:13s} {statistics.median(v[column] for v in values):8.1f}   ratio {statistics.median(ratios):.3f}   "
                  f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
    print("target: GANModule / two wrappers >= 0.97")


def worker(args: argparse.Namespace) -> None:
    warnings.filterwarnings("ignore")
    rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    device = torch.device("cuda", local_rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # Lightning finds this process group already set up and uses it.
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
    images = make_images(args, world_size)
    images_timed = args.batches * args.batch_size * world_size  # over all processes
    # Per side and round: (wall, CPU) images/s; CPU from rank 0's own CPU seconds.
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in SIDES}
    names = list(SIDES)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            wall, cpu = SIDES[name](images, args, rank, world_size, device)
            results[name].append((images_timed / wall, images_timed / cpu))
        if rank == 0:
            print(f"round {r + 1} (wall / CPU img/s): " + ", ".join(f"{n} {results[n][-1][0]:.1f} / {results[n][-1][1]:.1f}" for n in names), flush=True)
    if rank == 0:
        report(results, args, world_size, device)
    dist.destroy_process_group()


def main() -> None:
    args = parse_args()
    if "LOCAL_RANK" in os.environ:
        worker(args)
        return
    # The launching process only starts the workers.
    if args.device == "cuda" and args.processes > torch.cuda.device_count():
        # NCCL refuses two ranks on one GPU ("Duplicate GPU detected"), after minutes of start-up.
        sys.exit(
            f"--processes {args.processes} needs {args.processes} GPUs, {torch.cuda.device_count()} visible; "
            f"on one GPU, --processes 1 measures the strategy's per-step overhead (no traffic to overlap)."
        )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.processes}", __file__, *sys.argv[1:]]
    sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    main()
