"""End to end from a folder of PNGs: GANModule + ImageFolderDataModule vs a hand-written loop on preloaded tensors.

The folder is the 1,797 real 8x8 UCI digits (``few_shot_augment/digits.csv.gz``, CC BY 4.0) written as
grey PNGs into class subfolders ``0``..``9`` of a temporary directory. The library side is what a user
runs: ``ImageFolderDataModule(root, image_size=32, channels=1, batch_size=64)`` at its defaults (split,
flips, workers, in-memory decision) and a ``Trainer`` fitting ``GANModule`` for ``EPOCHS`` epochs
(validation, sanity check and per-epoch sample grids included); its time is the whole ``trainer.fit``
call, so folder scan, decoding, worker start-up and every epoch boundary count. The reference is a
careful hand-written DCGAN loop of the same networks and optimizers over the same images already
decoded into one float tensor (decoding not timed): a seeded permutation per epoch, per-batch random
flips, fake images under no_grad, losses read back every 50 steps. It trains on the same number of
images per epoch as the module (the training split, full batches only).

Both sides run in this one process, interleaved (A B, then B A, ...), and the ratio of images per second
is reported as the median over rounds. Run with one intra-op thread (the 2-core CI machines are shared):

    OMP_NUM_THREADS=1 python benchmarks/folder_throughput.py
    OMP_NUM_THREADS=1 python benchmarks/folder_throughput.py --in-memory false   # force the streamed path
    OMP_NUM_THREADS=1 python benchmarks/folder_throughput.py --width 16 --epochs 2  # quicker, data path weighs more
    OMP_NUM_THREADS=1 python benchmarks/folder_throughput.py --profile           # cProfile one module run
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import pstats
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lightning_gen import GANModule
from lightning_gen.data import ImageFolderDataModule
from lightning_gen.networks import DCGANDiscriminator, DCGANGenerator

DIGITS_FILE = Path(__file__).parent / "few_shot_augment" / "digits.csv.gz"
IMAGE_SIZE = 32
CHANNELS = 1
BATCH_SIZE = 64
EPOCHS = 3  # --epochs; 28 training batches each
ROUNDS = 3  # --rounds
LATENT_DIM = 100  # GANModule's defaults
WIDTH = 64  # --width; a narrower network makes the data path a larger share of each step
LOG_EVERY = 50


def write_digit_folder(root: Path) -> int:
    """The digits as 8x8 grey PNGs in class subfolders (grey levels 0-16 scaled to 0-255)."""
    with gzip.open(DIGITS_FILE, "rt") as handle:
        rows = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    pixels, labels = rows[:, :64], rows[:, 64]
    images = np.round(pixels * (255 / 16)).astype(np.uint8).reshape(-1, 8, 8)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{i:04d}.png")
    return len(images)


def make_data(root: Path, in_memory: bool | None) -> ImageFolderDataModule:
    options = {} if in_memory is None else {"in_memory": in_memory}
    return ImageFolderDataModule(root, image_size=IMAGE_SIZE, channels=CHANNELS, batch_size=BATCH_SIZE, **options)


def preload(root: Path) -> torch.Tensor:
    """The training split decoded once, as float in [-1, 1]: what the hand-written loop trains on."""
    data = make_data(root, in_memory=None)
    data.setup("fit")
    dataset = data._datasets["train"]
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return images.float() / 127.5 - 1.0


def hand_written(images: torch.Tensor, epochs: int) -> float:
    torch.manual_seed(0)
    g = DCGANGenerator(IMAGE_SIZE, CHANNELS, LATENT_DIM, WIDTH)
    d = DCGANDiscriminator(IMAGE_SIZE, CHANNELS, WIDTH)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batches = len(images) // BATCH_SIZE
    step = 0
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(images))
        for b in range(batches):
            real = images[order[b * BATCH_SIZE : (b + 1) * BATCH_SIZE]]
            flip = torch.rand(BATCH_SIZE, 1, 1, 1) < 0.5
            real = torch.where(flip, real.flip(-1), real)
            with torch.no_grad():
                fake = g(torch.randn(BATCH_SIZE, LATENT_DIM))
            d.requires_grad_(True)
            d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            d.requires_grad_(False)
            g_loss = F.softplus(-d(g(torch.randn(BATCH_SIZE, LATENT_DIM)))).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            if step % LOG_EVERY == 0:
                _ = d_loss.item(), g_loss.item()
            step += 1
    return step * BATCH_SIZE / (time.perf_counter() - start)


class _CountImages(L.Callback):
    """Counts training images, and times the fit loop alone (no setup: scan, decoding, sanity check)."""

    def __init__(self) -> None:
        self.images = 0

    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.loop_seconds = time.perf_counter() - self.start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[0])


def module(root: Path, epochs: int, in_memory: bool | None) -> tuple[float, float]:
    """Images/s of the whole ``trainer.fit`` call, and of its training loop alone (after setup)."""
    torch.manual_seed(0)
    model = GANModule(image_size=IMAGE_SIZE, channels=CHANNELS, latent_dim=LATENT_DIM, width=WIDTH)
    counter = _CountImages()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[counter],
        default_root_dir=tempfile.mkdtemp(), log_every_n_steps=LOG_EVERY,
    )
    data = make_data(root, in_memory)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return counter.images / (time.perf_counter() - start), counter.images / counter.loop_seconds


def main() -> None:
    global WIDTH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--in-memory", choices=["auto", "true", "false"], default="auto", help="the data module's in_memory")
    parser.add_argument("--width", type=int, default=WIDTH, help="width of both networks, both sides")
    parser.add_argument("--profile", action="store_true", help="cProfile one module run instead of comparing")
    args = parser.parse_args()
    WIDTH = args.width
    in_memory = {"auto": None, "true": True, "false": False}[args.in_memory]
    warnings.filterwarnings("ignore")
    root = Path(tempfile.mkdtemp(prefix="digits-folder-"))
    count = write_digit_folder(root)
    images = preload(root)
    print(f"{count} PNGs in {root}; training split {len(images)} images, {len(images) // BATCH_SIZE} batches/epoch")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        rate, loop_rate = module(root, args.epochs, in_memory)
        profiler.disable()
        print(f"GANModule {rate:.1f} img/s ({loop_rate:.1f} after setup)")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        return
    results: dict[str, list[float]] = {"hand-written": [], "GANModule": [], "GANModule after setup": []}
    for r in range(args.rounds):
        for name in (("hand-written", "GANModule") if r % 2 == 0 else ("GANModule", "hand-written")):
            if name == "hand-written":
                results[name].append(hand_written(images, args.epochs))
            else:
                whole, loop = module(root, args.epochs, in_memory)
                results["GANModule"].append(whole)
                results["GANModule after setup"].append(loop)
        hand, whole, loop = (results[k][-1] for k in results)
        print(f"round {r + 1}: hand-written {hand:.1f} img/s, GANModule {whole:.1f} img/s (ratio {whole / hand:.3f}), "
              f"after setup {loop:.1f} img/s (ratio {loop / hand:.3f})", flush=True)
    ratios = [ours / hand for ours, hand in zip(results["GANModule"], results["hand-written"])]
    loop_ratios = [ours / hand for ours, hand in zip(results["GANModule after setup"], results["hand-written"])]
    print(f"\nthreads={torch.get_num_threads()} width={WIDTH} epochs={args.epochs} in_memory={args.in_memory}")
    print(f"hand-written loop : {statistics.median(results['hand-written']):8.1f} images/s (median of {args.rounds})")
    print(f"GANModule         : {statistics.median(results['GANModule']):8.1f} images/s (median of {args.rounds})")
    print(f"ratio             : {statistics.median(ratios):.3f}  (median of per-round ratios; target >= 0.95)")
    print(f"ratio after setup : {statistics.median(loop_ratios):.3f}  (training loop only: no scan, decoding, sanity check)")


if __name__ == "__main__":
    main()
