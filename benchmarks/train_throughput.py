"""GANModule vs a hand-written PyTorch loop: same DCGAN networks, optimizers, data and batch size.

Both sides run in this one process, interleaved (A B A B ...), and report images/s over the timed
batches (warm-up excluded). The ratio GANModule / hand-written is Lightning's overhead for our
alternating updates; the target is >= 0.97 on CPU at 32x32, batch 64.

The hand-written loop is the efficient one a careful user would write (fake images under no_grad,
requires_grad switched off for the network that is not being updated, set_to_none zeroing), so the
ratio measures the library and Lightning, not a difference in algorithm.

    python benchmarks/train_throughput.py                 # the recorded configuration
    python benchmarks/train_throughput.py --batches 20    # quicker
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

IMAGE_SIZE = 32
BATCH_SIZE = 64
WIDTH = 64
LATENT_DIM = 100
WARMUP_BATCHES = 5
TIMED_BATCHES = 60
ROUNDS = 4


def make_loader(num_batches: int) -> DataLoader:
    images = torch.rand(num_batches * BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(TensorDataset(images), batch_size=BATCH_SIZE, shuffle=False)


def hand_written(loader: DataLoader, device: str) -> float:
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
        _ = d_loss.item(), g_loss.item()  # what logging costs a hand-written loop too
    return (len(loader) - WARMUP_BATCHES) * BATCH_SIZE / (time.perf_counter() - start)


class _Timer(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == WARMUP_BATCHES:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Stop at the last batch: the epoch-end sample grid is not part of the training loop's throughput.
        if batch_idx >= WARMUP_BATCHES:
            self.elapsed = time.perf_counter() - self.start


def lightning_gen_module(loader: DataLoader, device: str) -> float:
    torch.manual_seed(0)
    model = GANModule(image_size=IMAGE_SIZE, channels=3, latent_dim=LATENT_DIM, width=WIDTH)
    timer = _Timer()
    trainer = L.Trainer(
        accelerator=device, devices=1, max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer], limit_val_batches=0, default_root_dir=tempfile.mkdtemp(),
    )
    trainer.fit(model, loader)
    return (len(loader) - WARMUP_BATCHES) * BATCH_SIZE / timer.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=TIMED_BATCHES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    loader = make_loader(WARMUP_BATCHES + args.batches)
    results: dict[str, list[float]] = {"hand-written": [], "GANModule": []}
    runners = {"hand-written": hand_written, "GANModule": lightning_gen_module}
    for r in range(args.rounds):
        # Alternate which side goes first, so warm caches or a neighbour's load don't favour one side.
        for name in (("hand-written", "GANModule") if r % 2 == 0 else ("GANModule", "hand-written")):
            results[name].append(runners[name](loader, args.device))
        print(f"round {r + 1}: hand-written {results['hand-written'][-1]:.1f} img/s, GANModule {results['GANModule'][-1]:.1f} img/s", flush=True)
    hand, ours = statistics.median(results["hand-written"]), statistics.median(results["GANModule"])
    print(f"\ndevice={args.device} threads={torch.get_num_threads()} image={IMAGE_SIZE}px batch={BATCH_SIZE} width={WIDTH} timed batches={args.batches}")
    print(f"hand-written loop : {hand:8.1f} images/s (median of {args.rounds})")
    print(f"GANModule         : {ours:8.1f} images/s (median of {args.rounds})")
    print(f"ratio             : {ours / hand:.3f}  (target >= 0.97)")


if __name__ == "__main__":
    main()
