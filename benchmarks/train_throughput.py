"""GANModule vs a hand-written PyTorch loop: same DCGAN networks, optimizers, data and batch size.

Both sides run in this one process, interleaved (A B A B ...), and report images/s over the timed
batches (warm-up excluded). The ratio GANModule / hand-written is what the library costs or saves
for our alternating updates; the target is >= 1.0 at the module's defaults.

The hand-written loop is the efficient one a careful user would write (fake images under no_grad,
requires_grad switched off for the network that is not being updated, set_to_none zeroing, the
default Adam, losses read back every 50 steps for logging), always in fp32 without compile: it is the
reference. The module's own options are set by flags, one comparison per run:

    python benchmarks/train_throughput.py                          # defaults (the recorded configuration)
    python benchmarks/train_throughput.py --channels-last          # channels_last=True
    python benchmarks/train_throughput.py --compile                # compile=True (inductor)
    python benchmarks/train_throughput.py --batches 20             # quicker
    # On a GPU: bf16 + channels_last + compile vs the fp32 hand-written loop at 64x64, batch 256
    python benchmarks/train_throughput.py --device cuda --image-size 64 --batch-size 256 \
        --precision bf16-mixed --channels-last --compile
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_gen import GANModule
from lightning_gen.networks import DCGANDiscriminator, DCGANGenerator

IMAGE_SIZE = 32  # --image-size
BATCH_SIZE = 64  # --batch-size
WIDTH = 64
LATENT_DIM = 100
WARMUP_BATCHES = 5
TIMED_BATCHES = 60
ROUNDS = 4


LOG_EVERY = 50  # the hand-written loop reads its losses back this often, as Lightning's default logging does


def make_loader(num_batches: int) -> DataLoader:
    images = torch.rand(num_batches * BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(TensorDataset(images), batch_size=BATCH_SIZE, shuffle=False)


def hand_written(loader: DataLoader, device: str, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    g = DCGANGenerator(IMAGE_SIZE, 3, LATENT_DIM, WIDTH).to(device)
    d = DCGANDiscriminator(IMAGE_SIZE, 3, WIDTH).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start = None
    for i, (real,) in enumerate(loader):
        if i == WARMUP_BATCHES:
            start = time.perf_counter()
        real = real.to(device)
        z = torch.randn(real.shape[0], LATENT_DIM, device=device)
        with torch.no_grad():
            fake = g(z)
        d.requires_grad_(True)
        d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        d.requires_grad_(False)
        g_loss = F.softplus(-d(g(torch.randn(real.shape[0], LATENT_DIM, device=device)))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if i % LOG_EVERY == 0:
            _ = d_loss.item(), g_loss.item()  # what logging costs a hand-written loop too
    if device == "cuda":
        torch.cuda.synchronize()
    return (len(loader) - WARMUP_BATCHES) * BATCH_SIZE / (time.perf_counter() - start)


class _Timer(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == WARMUP_BATCHES:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Stop at the last batch: the epoch-end sample grid is not part of the training loop's throughput.
        if batch_idx == trainer.num_training_batches - 1:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            self.elapsed = time.perf_counter() - self.start


def lightning_gen_module(loader: DataLoader, device: str, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = GANModule(
        image_size=IMAGE_SIZE, channels=3, latent_dim=LATENT_DIM, width=WIDTH, compile=args.compile, channels_last=args.channels_last
    )
    timer = _Timer()
    trainer = L.Trainer(
        accelerator=device, devices=1, max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer], limit_val_batches=0, default_root_dir=tempfile.mkdtemp(),
        precision=args.precision, log_every_n_steps=LOG_EVERY,
    )
    trainer.fit(model, loader)
    return (len(loader) - WARMUP_BATCHES) * BATCH_SIZE / timer.elapsed


def main() -> None:
    global IMAGE_SIZE, BATCH_SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=TIMED_BATCHES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--precision", default="32-true", help="the module's precision (the reference stays fp32)")
    parser.add_argument("--compile", action="store_true", help="GANModule(compile=True)")
    parser.add_argument("--channels-last", action="store_true", help="GANModule(channels_last=True)")
    args = parser.parse_args()
    IMAGE_SIZE, BATCH_SIZE = args.image_size, args.batch_size
    warnings.filterwarnings("ignore")
    loader = make_loader(WARMUP_BATCHES + args.batches)
    results: dict[str, list[float]] = {"hand-written": [], "GANModule": []}
    runners = {"hand-written": hand_written, "GANModule": lightning_gen_module}
    for r in range(args.rounds):
        # Alternate which side goes first, so warm caches or a neighbour's load don't favour one side.
        for name in (("hand-written", "GANModule") if r % 2 == 0 else ("GANModule", "hand-written")):
            results[name].append(runners[name](loader, args.device, args))
        print(f"round {r + 1}: hand-written {results['hand-written'][-1]:.1f} img/s, GANModule {results['GANModule'][-1]:.1f} img/s", flush=True)
    hand, ours = statistics.median(results["hand-written"]), statistics.median(results["GANModule"])
    print(
        f"\ndevice={args.device} threads={torch.get_num_threads()} image={IMAGE_SIZE}px batch={BATCH_SIZE} width={WIDTH} "
        f"timed batches={args.batches} module: precision={args.precision} compile={args.compile} channels_last={args.channels_last}"
    )
    print(f"hand-written loop : {hand:8.1f} images/s (median of {args.rounds})")
    print(f"GANModule         : {ours:8.1f} images/s (median of {args.rounds})")
    print(f"ratio             : {ours / hand:.3f}  (target >= 1.0 at defaults)")


if __name__ == "__main__":
    main()
