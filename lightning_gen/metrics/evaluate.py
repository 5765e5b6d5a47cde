"""Standalone evaluation: :func:`evaluate` in Python and ``lightning-gen fid REAL FAKE`` on the command line.

Each side is an image folder, a Lightning checkpoint of a ``GANModule`` or ``VAE`` (``.ckpt``), a zoo model name,
or, from Python, a module with ``sample(n, seed)`` or a tensor of images. Generated images go straight from the
model to the extractor (no PNG round trip). Statistics of a real image folder are cached on disk (see
``cache.py``). The numbers come with their :class:`~lightning_gen.metrics.protocol.Protocol`.

Not here: distributed evaluation (use the callbacks inside a ``Trainer`` for that) and resizing of folders with
mixed image sizes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor

from lightning_gen.metrics.cache import RealStatisticsCache, folder_fingerprint
from lightning_gen.metrics.evaluator import MetricEvaluator
from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.inception import MissingInceptionWeightsError
from lightning_gen.metrics.protocol import MetricResult
from lightning_gen.metrics.statistics import DEFAULT_RNG_SEED
from lightning_gen.sampling import load_generative_module

__all__ = ["IMAGE_EXTENSIONS", "evaluate", "list_image_files", "main"]

#: Image files read from a folder: torch-fidelity's default set, so both read exactly the same files.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# How folder images become tensors (part of the folder fingerprint): the same as torch-fidelity's reader.
_FOLDER_READER = "PIL.Image.open().convert('RGB') -> pil_to_tensor, native size"
METRIC_NAMES = ("fid", "is", "kid")


def list_image_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files (``IMAGE_EXTENSIONS``, any case) in ``folder``, sorted by path.

    Args:
        folder: Directory to scan.
        recursive: Also scan sub-directories (torch-fidelity's ``samples_find_deep``).
    """
    folder = Path(folder)
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


class _ImageFiles(Dataset):
    def __init__(self, files: Sequence[Path]) -> None:
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        with Image.open(self.files[index]) as image:
            return pil_to_tensor(image.convert("RGB"))


def _stack_same_size(images: list[Tensor]) -> Tensor:
    sizes = {tuple(image.shape[1:]) for image in images}
    if len(sizes) > 1:
        shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:3])
        raise ValueError(
            f"The image folder mixes image sizes ({shown}); batches need one size. Resize the images to a common "
            f"size first (the extractor resizes to its own input size anyway)."
        )
    return torch.stack(images)


@dataclass
class _Source:
    """Images from one side of the comparison."""

    description: str  # recorded in the protocol (real side) and used in messages
    count: int  # how many images batches() yields in total
    batches: Callable[[], Iterable[Tensor]]
    fingerprint: str | None = None  # set when the images can be cached by content identity
    sample_seed: int | None = None  # set when the images are generated here


def _folder_source(folder: Path, *, limit: int | None, batch_size: int, num_workers: int, recursive: bool) -> _Source:
    files = list_image_files(folder, recursive)
    if not files:
        hint = "" if recursive else " (pass recursive=True / --recursive to search sub-folders)"
        raise ValueError(f"No {'/'.join(IMAGE_EXTENSIONS)} images in folder {str(folder)!r}{hint}.")
    files = files[:limit] if limit is not None else files

    def batches() -> Iterator[Tensor]:
        yield from DataLoader(
            _ImageFiles(files),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=_stack_same_size,
            pin_memory=torch.cuda.is_available(),
        )

    return _Source(str(folder), len(files), batches, fingerprint=folder_fingerprint(folder, files, _FOLDER_READER))


def generate_batches(model: Any, num_samples: int, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Yield ``num_samples`` generated images in batches; batch ``b`` is ``model.sample(size, seed=seed + b)``.

    Seeding per batch makes the samples a function of (seed, batch_size) alone, on any device and process count.
    """
    for index, start in enumerate(range(0, num_samples, batch_size)):
        with torch.no_grad():
            images = model.sample(min(batch_size, num_samples - start), seed=seed + index)
        yield images


def _model_source(model: Any, description: str, *, num_samples: int, batch_size: int, seed: int) -> _Source:
    if not callable(getattr(model, "sample", None)):
        raise TypeError(f"{description} has no sample(n, seed=...) method; expected a GANModule, VAE or zoo model.")
    return _Source(
        description,
        num_samples,
        lambda: generate_batches(model, num_samples, batch_size, seed),
        sample_seed=seed,
    )


def _tensor_source(images: Tensor, description: str, batch_size: int) -> _Source:
    if images.dim() != 4:
        raise ValueError(f"{description} must be an image tensor (N, C, H, W), got shape {tuple(images.shape)}.")
    return _Source(description, images.shape[0], lambda: images.split(batch_size))


def _open_source(
    spec: Any, role: str, *, num_samples: int, num_real: int | None, batch_size: int, device: torch.device, seed: int,
    num_workers: int, recursive: bool,
) -> _Source:
    if isinstance(spec, Tensor):
        return _tensor_source(spec, f"{role} tensor", batch_size)
    if isinstance(spec, (str, os.PathLike)):
        if Path(spec).is_dir():
            limit = num_real if role == "real" else None
            return _folder_source(Path(spec), limit=limit, batch_size=batch_size, num_workers=num_workers, recursive=recursive)
        model = load_generative_module(str(spec), device)
        return _model_source(model, str(spec), num_samples=num_samples, batch_size=batch_size, seed=seed)
    return _model_source(spec, f"{role} {type(spec).__name__}", num_samples=num_samples, batch_size=batch_size, seed=seed)


def evaluate(
    real: Any,
    fake: Any,
    *,
    metrics: Sequence[str] = METRIC_NAMES,
    num_samples: int = 50_000,
    num_real: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    weights: str | os.PathLike | None = None,
    download: bool = True,
    feature_extractor: nn.Module | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    seed: int = 0,
    is_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    rng_seed: int = DEFAULT_RNG_SEED,
    num_workers: int | None = None,
    recursive: bool = False,
    progress: bool = False,
) -> MetricResult:
    """FID, IS and KID between real and generated images, with the standard protocol.

    IS is computed on ``fake``. With the defaults the numbers are those of ``torch_fidelity.calculate_metrics``
    with ``input1=fake, input2=real`` (50k samples, 10 IS splits, KID 100 subsets of 1000).

    Args:
        real: Image folder, ``.ckpt`` file, zoo name, model with ``sample(n, seed)`` or uint8 image tensor
            (N, C, H, W). May be ``None`` when only ``"is"`` is requested.
        fake: Same choices; a tensor may also be float in [-1, 1] (quantized by rounding).
        metrics: Any of ``"fid"``, ``"is"``, ``"kid"``.
        num_samples: Images generated for a model side (50k is what papers report).
        num_real: Use only the first ``num_real`` images (sorted by path) of a real folder; default all.
        batch_size: Images per generation and extraction batch.
        device: Where models and the extractor run; default CUDA when available.
        weights: FID Inception weights file (else ``LIGHTNING_GEN_INCEPTION_WEIGHTS``, the torch hub cache, download).
        download: Whether missing weights may be downloaded.
        feature_extractor: A module mapping uint8 (N, 3, H, W) to (N, d) used instead of Inception. Non-standard:
            numbers are not comparable with published ones (the protocol records ``standard=False``).
        cache_dir: Directory of the real-statistics cache; default ``$LIGHTNING_GEN_CACHE/metrics`` or
            ``~/.cache/lightning_gen/metrics``.
        use_cache: Read and write the cache (folders only: other sources are not fingerprinted).
        seed: Base seed of generated samples (batch ``b`` uses ``seed + b``).
        is_splits: IS splits.
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size; both sides need at least this many images.
        rng_seed: Seed of the IS split permutation and the KID subsets (torch-fidelity's 2020).
        num_workers: Folder decoding processes; default ``min(4, cpu count)``.
        recursive: Also read images in sub-folders.
        progress: Show progress bars on stderr.

    Returns:
        The values and their protocol.

    Raises:
        MissingInceptionWeightsError: The Inception weights are missing (message says where to get them).
        ValueError: Bad arguments or too few images for the requested metrics.
    """
    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {METRIC_NAMES}, got {tuple(metrics)}.")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not (isinstance(num_samples, int) and num_samples >= 2):
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}.")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    num_workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
    options = dict(
        num_samples=num_samples, num_real=num_real, batch_size=batch_size, device=device, seed=seed,
        num_workers=num_workers, recursive=recursive,
    )
    needs_real = "fid" in metrics or "kid" in metrics
    fake_source = _open_source(fake, "fake", **options)
    real_source = _open_source(real, "real", **options) if needs_real else None
    _check_counts(metrics, real_source, fake_source, is_splits=is_splits, kid_subset_size=kid_subset_size)

    extractor = (
        FeatureExtractor.custom(feature_extractor)
        if feature_extractor is not None
        else FeatureExtractor.inception(weights, download=download)
    )
    evaluator = MetricEvaluator(
        extractor,
        fid="fid" in metrics,
        inception_score="is" in metrics,
        kid="kid" in metrics,
        is_splits=is_splits,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        rng_seed=rng_seed,
        device=device,
    )
    if real_source is not None:
        cache = RealStatisticsCache(cache_dir) if use_cache and real_source.fingerprint is not None else None
        keys = _cache_keys(evaluator, cache, real_source.fingerprint, num_real)
        cached = {kind: cache.load(key) for kind, key in keys.items()} if cache is not None else {}
        if cached and all(payload is not None for payload in cached.values()):
            evaluator.load_real_payloads(cached)
        else:
            _feed(evaluator.update_real, real_source, "real statistics", progress)
            if cache is not None:
                for kind, payload in evaluator.real_payloads().items():
                    cache.save(keys[kind], {"kind": kind, "source": real_source.description, **payload})
    _feed(evaluator.update_fake, fake_source, "generated", progress)
    return evaluator.compute(
        split=real_source.description if real_source is not None else None,
        real_fingerprint=real_source.fingerprint if real_source is not None else None,
        sample_seed=fake_source.sample_seed,
    )


def _cache_keys(
    evaluator: MetricEvaluator, cache: RealStatisticsCache | None, fingerprint: str | None, num_real: int | None
) -> dict[str, str]:
    if cache is None or fingerprint is None:
        return {}
    kinds = [kind for kind, metric in (("fid", evaluator.fid), ("kid", evaluator.kid)) if metric is not None]
    return {
        kind: cache.key(
            kind=kind,
            data_fingerprint=fingerprint,
            extractor_fingerprint=evaluator.extractor.fingerprint,
            num_real=num_real,
        )
        for kind in kinds
    }


def _check_counts(
    metrics: Sequence[str], real: _Source | None, fake: _Source, *, is_splits: int, kid_subset_size: int
) -> None:
    # Checked before the extractor is built or any image is read: a bad setting fails in a second, not an hour.
    if "is" in metrics and fake.count < is_splits:
        raise ValueError(
            f"The Inception Score needs at least is_splits={is_splits} generated images, {fake.description} has "
            f"{fake.count}. Lower is_splits (--is-splits; recorded in the protocol) or disable IS (--no-is)."
        )
    for source in (real, fake):
        if source is None:
            continue
        if "kid" in metrics and source.count < kid_subset_size:
            raise ValueError(
                f"KID subsets of kid_subset_size={kid_subset_size} need that many images, but {source.description} "
                f"has {source.count}. Pass a smaller kid_subset_size (--kid-subset-size; it is recorded in the "
                f"protocol) or disable KID (--no-kid)."
            )
        if "fid" in metrics and source.count < 2:
            raise ValueError(f"FID needs at least 2 images per side, {source.description} has {source.count}.")


def _feed(update: Callable[[Tensor], None], source: _Source, what: str, progress: bool) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=source.count, desc=what, unit="img", disable=not progress, leave=False, file=sys.stderr) as bar:
        for images in source.batches():
            update(images)
            bar.update(images.shape[0])


def build_parser() -> argparse.ArgumentParser:
    """The ``lightning-gen fid`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lightning-gen fid",
        description=(
            "Compute FID (and IS, KID) between REAL and FAKE with the standard protocol (torch-fidelity's Inception, "
            "TF-compatible resize, uint8 rounding, float64 statistics) and print them as JSON with the protocol. "
            "Each side is an image folder, a .ckpt of a GANModule/VAE or a zoo model name. IS is computed on FAKE."
        ),
    )
    parser.add_argument("real", help="real images: folder, .ckpt or zoo name")
    parser.add_argument("fake", help="generated images: folder, .ckpt or zoo name")
    parser.add_argument("--num-samples", type=int, default=50_000, help="images generated per model side (default: 50000)")
    parser.add_argument("--num-real", type=int, default=None, help="use only the first N images of a REAL folder")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--weights", default=None, help="FID Inception weights file (default: $LIGHTNING_GEN_INCEPTION_WEIGHTS, then the torch hub cache, then download)")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing weights")
    parser.add_argument("--is", dest="inception_score", action=argparse.BooleanOptionalAction, default=True, help="Inception Score on FAKE (default: on)")
    parser.add_argument("--kid", action=argparse.BooleanOptionalAction, default=True, help="Kernel Inception Distance (default: on)")
    parser.add_argument("--is-splits", type=int, default=10, help="IS splits (default: 10)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default: 100)")
    parser.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of generated samples (default: 0)")
    parser.add_argument("--cache-dir", default=None, help="real-statistics cache (default: $LIGHTNING_GEN_CACHE/metrics or ~/.cache/lightning_gen/metrics)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write cached real statistics")
    parser.add_argument("--recursive", action="store_true", help="also read images in sub-folders")
    parser.add_argument("--num-workers", type=int, default=None, help="image decoding processes (default: min(4, CPUs))")
    parser.add_argument("--output", default=None, help="also write the JSON to this file")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars (default: when stderr is a terminal)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen fid``; returns the exit code (0 ok, 1 error, 2 usage error)."""
    args = build_parser().parse_args(argv)
    metrics = ["fid"] + (["is"] if args.inception_score else []) + (["kid"] if args.kid else [])
    try:
        result = evaluate(
            args.real,
            args.fake,
            metrics=metrics,
            num_samples=args.num_samples,
            num_real=args.num_real,
            batch_size=args.batch_size,
            device=args.device,
            weights=args.weights,
            download=not args.no_download,
            cache_dir=args.cache_dir,
            use_cache=not args.no_cache,
            seed=args.seed,
            is_splits=args.is_splits,
            kid_subsets=args.kid_subsets,
            kid_subset_size=args.kid_subset_size,
            num_workers=args.num_workers,
            recursive=args.recursive,
            progress=sys.stderr.isatty() if args.progress is None else args.progress,
        )
    # User-facing failures (bad paths, missing weights, unknown zoo names, offline Hub, too few images) get a
    # one-line message; anything else is a bug and keeps its traceback.
    except (MissingInceptionWeightsError, OSError, ValueError, TypeError, LookupError) as error:
        print(f"lightning-gen fid: error: {error}", file=sys.stderr)
        return 1
    text = result.to_json()
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0
