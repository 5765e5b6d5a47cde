"""FID speed and peak memory: lightning-gen vs torch-fidelity, same generator, real folder and Inception weights.

Four timed configurations, each in a fresh process (so peak memory is its own and no in-process state helps):
torch-fidelity and lightning-gen, without and with cached real statistics (torch-fidelity caches a folder's
statistics when given ``input2_cache_name``). Both evaluate exactly the same generated images: the
torch-fidelity wrapper ignores its noise and returns ``model.sample(size, seed=batch_index)`` like lightning-gen
does, so the two FIDs must agree. On a CUDA machine it also reports Inception images/s.

Uses the real FID Inception weights when they can be found offline (see lightning_gen.metrics.inception), else a
randomly initialised file of the same architecture: the speed is the same.

Run: python benchmarks/fid_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

# ----------------------------------------------------------------------------------------------- settings
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NUM_SAMPLES = 10_000 if DEVICE == "cuda" else 200  # generated images per FID
NUM_REAL = 10_000 if DEVICE == "cuda" else 200  # images in the real folder
BATCH_SIZE = 250 if DEVICE == "cuda" else 50
IMAGE_SIZE = 32
CUDA_THROUGHPUT_BATCH = 256  # images per forward for the Inception images/s figure
THREADS = min(2, os.cpu_count() or 1) if DEVICE == "cpu" else None  # the CI machines have 2 cores
REPEATS = 2  # rounds over the four configurations; the fastest run of each is reported (shared machines are noisy)
# ---------------------------------------------------------------------------------------------------------

CONFIGS = ("torch-fidelity", "lightning-gen", "torch-fidelity cached", "lightning-gen cached")


def make_generator():
    from lightning_gen import GANModule

    torch.manual_seed(0)
    return GANModule(image_size=IMAGE_SIZE, latent_dim=64, width=32).to(DEVICE).eval()


def prepare(workdir: Path) -> Path:
    """Write the real folder and, when the real weights are not available, a random-weights file."""
    from lightning_gen.metrics import MissingInceptionWeightsError, resolve_inception_weights

    real = workdir / "real"
    real.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(NUM_REAL):
        yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] / IMAGE_SIZE
        centre, radius = rng.uniform(0.2, 0.8, size=(3, 2)), rng.uniform(0.1, 0.4, size=(3, 1, 1))
        planes = np.exp(-((xx - centre[:, :1, None]) ** 2 + (yy - centre[:, 1:, None]) ** 2) / (2 * radius**2))
        Image.fromarray((planes.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(real / f"{i:05d}.png")
    try:
        return resolve_inception_weights(download=False)
    except MissingInceptionWeightsError:
        calibration = torch.stack([pil_to_tensor(Image.open(real / f"{i:05d}.png")) for i in range(16)])
        return make_random_weights(workdir / "random-inception.pth", calibration)


def make_random_weights(path: Path, calibration: torch.Tensor) -> Path:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(0)
    empty = path.with_suffix(".empty")
    torch.save({}, empty)
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state_dict: None):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    # Calibrate batch norm on real images so activations have realistic magnitudes (no vanishing or exploding values).
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        net.train()(calibration)
    torch.save(net.state_dict(), path)
    return path


def run_child(config: str, workdir: Path, weights: Path) -> dict:
    """One timed FID computation; runs in its own process."""
    if THREADS:
        torch.set_num_threads(THREADS)
    model = make_generator()
    real = str(workdir / "real")
    cached = config.endswith("cached")
    if config.startswith("lightning-gen"):
        from lightning_gen.metrics import evaluate

        def compute() -> float:
            return evaluate(
                real, model, metrics=("fid",), num_samples=NUM_SAMPLES, batch_size=BATCH_SIZE, device=DEVICE,
                weights=weights, use_cache=cached, cache_dir=workdir / "lg-cache",
            ).fid
    else:
        import torch_fidelity
        from torch_fidelity import GenerativeModelBase

        class SameSamples(GenerativeModelBase):
            """Returns lightning-gen's seeded batches, so both libraries see identical images."""

            def __init__(self) -> None:
                super().__init__()
                self.batch_index = 0

            z_size, z_type, num_classes = 64, "normal", 0

            def forward(self, noise):
                images = model.sample(noise.shape[0], seed=self.batch_index)
                self.batch_index += 1
                return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

        def compute() -> float:
            metrics = torch_fidelity.calculate_metrics(
                input1=SameSamples(), input1_model_num_samples=NUM_SAMPLES, input2=real, fid=True,
                batch_size=BATCH_SIZE, cuda=DEVICE == "cuda", feature_extractor_weights_path=str(weights),
                cache=cached, cache_root=str(workdir / "tf-cache"), input2_cache_name="bench-real" if cached else None,
                verbose=False,
            )
            return metrics["frechet_inception_distance"]

    if cached:
        compute()  # fills the cache; only the second run is timed
    if DEVICE == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fid = compute()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "config": config,
        "seconds": seconds,
        "fid": fid,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if DEVICE == "cuda" else None,
    }


def cuda_throughput(weights: Path) -> dict:
    """Inception images/s on the GPU (uint8 32 px in, resize included), ours vs torch-fidelity's module."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from lightning_gen.metrics import FeatureExtractor

    images = torch.randint(0, 256, (CUDA_THROUGHPUT_BATCH, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, device="cuda")
    networks = {
        "lightning-gen": FeatureExtractor.inception(weights).cuda(),
        "torch-fidelity": FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)
        ).cuda(),
    }
    result = {}
    for name, network in networks.items():
        with torch.no_grad():
            for _ in range(3):
                network(images)
            torch.cuda.synchronize()
            start, repeats = time.perf_counter(), 10
            for _ in range(repeats):
                network(images)
            torch.cuda.synchronize()
        result[name] = repeats * CUDA_THROUGHPUT_BATCH / (time.perf_counter() - start)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, Path(args.workdir), Path(args.weights))))
        return

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        weights = prepare(workdir)
        kind = "FID Inception" if "random" not in weights.name else "random, same architecture"
        print(f"device={DEVICE} threads={THREADS or 'all'} repeats={REPEATS} (fastest shown) fake={NUM_SAMPLES} real={NUM_REAL} batch={BATCH_SIZE} "
              f"image={IMAGE_SIZE}px weights={kind} torch={torch.__version__}")
        rows: dict[str, dict] = {}
        for _ in range(REPEATS):
            for config in CONFIGS:
                command = [sys.executable, __file__, "--child", config, "--workdir", tmp, "--weights", str(weights)]
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                if config not in rows or row["seconds"] < rows[config]["seconds"]:
                    rows[config] = row
        print(f"{'configuration':<24}{'seconds':>9}{'fake img/s':>12}{'peak RSS MB':>13}{'CUDA peak MB':>14}{'FID':>12}")
        for config, row in rows.items():
            cuda_mb = f"{row['cuda_peak_mb']:.0f}" if row["cuda_peak_mb"] is not None else "-"
            print(f"{config:<24}{row['seconds']:>9.2f}{NUM_SAMPLES / row['seconds']:>12.1f}"
                  f"{row['peak_rss_mb']:>13.0f}{cuda_mb:>14}{row['fid']:>12.4f}")
        tf, lg = rows["torch-fidelity"]["seconds"], rows["lightning-gen"]["seconds"]
        tf_cached, lg_cached = rows["torch-fidelity cached"]["seconds"], rows["lightning-gen cached"]["seconds"]
        print(f"speed-up without cache: {tf / lg:.2f}x (target >= 1.0x)")
        print(f"speed-up with cached real statistics: {tf / lg_cached:.2f}x vs torch-fidelity without cache "
              f"(target >= 1.5x), {tf_cached / lg_cached:.2f}x vs torch-fidelity with its cache")
        print(f"FID agreement (same images): {abs(rows['lightning-gen']['fid'] - rows['torch-fidelity']['fid']):.2e}")
        if DEVICE == "cuda":
            throughput = cuda_throughput(weights)
            print("CUDA Inception images/s (batch {}): ".format(CUDA_THROUGHPUT_BATCH)
                  + ", ".join(f"{name} {value:.0f}" for name, value in throughput.items()))


if __name__ == "__main__":
    main()
