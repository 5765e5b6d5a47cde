"""Loader throughput: ImageFolderDataModule (no cache, warm cache) vs torchvision ImageFolder.

Generates a folder of JPEGs, then measures how many images per second each pipeline
delivers as normalised float batches, with the same batch size and worker count:

* ours, no cache:   ImageFolderDataModule(cache=False), uint8 batches converted to
                    float in [-1, 1] by its on_after_batch_transfer (as in training);
* ours, warm cache: the same with cache=True, cache built beforehand (a later run);
* torchvision:      datasets.ImageFolder + Resize, CenterCrop, ToTensor, Normalize.

Each pipeline runs one untimed epoch first (worker start-up, page cache), then
EPOCHS timed epochs. No model runs: this measures the data path alone.

    python benchmarks/data_throughput.py                     # the recorded settings
    python benchmarks/data_throughput.py --num-images 200    # a quick look
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

# ----------------------------------------------------------------------- settings
NUM_IMAGES = 2000  # JPEG files in the generated folder
SOURCE_SIZE = 256  # their side, in pixels
IMAGE_SIZE = 64  # side of the images fed to a model
NUM_CLASSES = 4  # class subfolders (torchvision's ImageFolder needs at least one)
BATCH_SIZE = 64
NUM_WORKERS = 2  # same for every pipeline
EPOCHS = 3  # timed epochs per pipeline, after one untimed warm-up epoch
JPEG_QUALITY = 90
SEED = 0
# --------------------------------------------------------------------------------


def make_folder(root: Path, num_images: int, size: int, num_classes: int) -> None:
    """Write photo-like JPEGs: smooth colour fields plus fine noise (not flat, not pure noise)."""
    rng = np.random.default_rng(SEED)
    for i in range(num_images):
        coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        noisy = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, size=(size, size, 3))
        folder = root / f"class_{i % num_classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
            folder / f"{i:05d}.jpg", quality=JPEG_QUALITY
        )


def time_epochs(loader, epochs: int, to_float=None) -> float:
    """Images per second over ``epochs`` passes, after one untimed pass."""

    def one_pass() -> int:
        count = 0
        for batch in loader:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            if to_float is not None:
                images = to_float(images)
            count += images.shape[0]
        return count

    one_pass()
    start = time.perf_counter()
    total = sum(one_pass() for _ in range(epochs))
    return total / (time.perf_counter() - start)


def ours(root: Path, args, cache: bool, cache_dir: Path) -> float:
    from lightning_gen.data import ImageFolderDataModule

    def make():
        return ImageFolderDataModule(
            root,
            image_size=args.image_size,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            val_fraction=0.0,
            random_flip=False,  # torchvision's pipeline below doesn't flip either
            cache=cache,
            cache_dir=cache_dir,
            in_memory=False,  # the decoding (or memory-mapped) path; small folders would otherwise stay in memory
        )

    if cache:
        start = time.perf_counter()
        builder = make()
        builder.prepare_data()
        print(f"  cache built in {time.perf_counter() - start:.1f} s (not part of the figure)")
    dm = make()  # a fresh module, as in a later run: finds the warm cache
    dm.setup("fit")
    loader = dm.train_dataloader()
    rate = time_epochs(loader, args.epochs, lambda x: dm.on_after_batch_transfer(x, 0))
    del loader
    gc.collect()  # stop the persistent workers before the next pipeline runs
    return rate


def torchvision_pipeline(root: Path, args) -> float | None:
    try:
        from torchvision import datasets, transforms
    except Exception as error:  # noqa: BLE001 - broken compiled ops raise all sorts
        print(f"  torchvision could not be imported ({type(error).__name__}: {error}); skipped.")
        return None
    import torch

    transform = transforms.Compose(
        [
            transforms.Resize(args.image_size),
            transforms.CenterCrop(args.image_size),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root), transform=transform),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
        drop_last=True,
    )
    try:
        rate = time_epochs(loader, args.epochs)
    except Exception as error:  # noqa: BLE001 - e.g. compiled ops missing at call time
        print(f"  the torchvision pipeline failed ({type(error).__name__}: {error}); skipped.")
        return None
    del loader
    gc.collect()
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=NUM_IMAGES)
    parser.add_argument("--source-size", type=int, default=SOURCE_SIZE)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--num-workers", type=int, default=NUM_WORKERS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--folder", type=Path, help="reuse (or create) this image folder")
    args = parser.parse_args(argv)

    import torch

    # The timing loop itself only converts batches (ours) or receives them (torchvision).
    # One intra-op thread, like the DataLoader gives each worker, keeps that small
    # conversion from fighting the workers for the cores (on a 2-core machine two
    # threads made it 10-20x slower) and treats both pipelines the same.
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="lg-data-bench-"))
    root = args.folder or workdir / "images"
    try:
        if not root.exists() or not any(root.iterdir()):
            print(f"Writing {args.num_images} {args.source_size}px JPEGs to {root} ...")
            make_folder(root, args.num_images, args.source_size, NUM_CLASSES)
        print(
            f"{args.num_images} JPEGs {args.source_size}px -> {args.image_size}px, batch "
            f"{args.batch_size}, {args.num_workers} workers, {args.epochs} timed epochs, "
            f"{os.cpu_count()} CPUs"
        )
        results: dict[str, float | None] = {}
        print("ours, no cache ...")
        results["ours, no cache"] = ours(root, args, cache=False, cache_dir=workdir / "cache")
        print("ours, warm cache ...")
        results["ours, warm cache"] = ours(root, args, cache=True, cache_dir=workdir / "cache")
        print("torchvision ImageFolder ...")
        results["torchvision ImageFolder"] = torchvision_pipeline(root, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    reference = results["torchvision ImageFolder"]
    print()
    print(f"{'pipeline':<26}{'images/s':>10}{'vs torchvision':>16}")
    for name, rate in results.items():
        if rate is None:
            print(f"{name:<26}{'n/a':>10}{'':>16}")
            continue
        ratio = f"{rate / reference:.2f}x" if reference else "n/a"
        print(f"{name:<26}{rate:>10.0f}{ratio:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
