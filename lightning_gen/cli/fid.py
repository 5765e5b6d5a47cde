"""``lightning-gen fid REAL FAKE`` and ``lightning-gen fid-stats SOURCE --out stats.npz``.

Thin argument parsing over :func:`lightning_gen.metrics.evaluate` and
:func:`lightning_gen.metrics.compute_statistics`; every number and every protocol field comes from there. Results
are printed as JSON (values plus the protocol record); with ``--extractor shapes`` that JSON also holds ``fsd``,
``validity``, ``real_validity`` and the per-factor coverage (``factors``); with ``--extractor digits`` ``digits_fd``,
``class_tv``, ``class_coverage``, ``validity`` and the class shares.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "build_stats_parser", "main", "stats_main"]

_SOURCES = "an image folder, a .npz statistics file, a .ckpt of a GANModule/VAE or a zoo name"


def _add_reading_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by both commands: how images are read and which extractor sees them."""
    parser.add_argument("--num-samples", type=int, default=50_000, help="images generated per model side (default: 50000)")
    parser.add_argument("--num-real", type=int, default=None, help="use a seeded uniform random subset of N images of a REAL folder (default: all)")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of that subset (default: 0; recorded in the protocol)")
    parser.add_argument("--image-size", type=int, default=None, help="resize folder images like ImageFolderDataModule(image_size=N): shorter side, centre crop (default: native size)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--extractor", default=None, help="feature extractor: inception-v3-compat (default, comparable with papers), dinov2-vit-l-14 (FD_DINOv2), dinov2-vit-b-14, dinov2-vit-s-14, shapes (procedural shapes data only: the FID is then the Frechet Shapes Distance, and `lightning-gen fid` also prints it as fsd, with validity, real_validity and per-factor coverage under factors, unless a side is a .npz), digits (handwritten digits, e.g. a `make-digits` folder: the FID is then the digits FD, also printed as digits_fd, with class_tv, class_coverage, validity and the class shares), ...")
    parser.add_argument("--weights", default=None, help="weights file of the extractor (default: its environment variable, then the torch hub cache, then download)")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing weights")
    parser.add_argument("--seed", type=int, default=0, help="base seed of generated samples (default: 0)")
    parser.add_argument("--cache-dir", default=None, help="real-statistics cache (default: $LIGHTNING_GEN_CACHE/metrics or ~/.cache/lightning_gen/metrics)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write cached real statistics")
    parser.add_argument("--no-recursive", dest="recursive", action="store_false", help="read only the top-level class folders, not folders nested in them")
    parser.add_argument("--num-workers", type=int, default=None, help="image decoding processes (default: min(4, CPUs))")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars (default: when stderr is a terminal)")


def build_parser() -> argparse.ArgumentParser:
    """The ``lightning-gen fid`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lightning-gen fid",
        description=(
            "Compute FID (and IS, KID, precision/recall/density/coverage) between REAL and FAKE and print them as "
            "JSON with the protocol. Each side is " + _SOURCES + ". Folders are read with the data modules' "
            "decoder. IS is computed on FAKE. KID, IS and PRDC never block FID: with too few images KID uses the "
            "largest valid subsets and IS / PRDC are skipped, as the protocol's notes say."
        ),
    )
    parser.add_argument("real", help=f"real images: {_SOURCES}")
    parser.add_argument("fake", help=f"generated images: {_SOURCES}")
    _add_reading_options(parser)
    parser.add_argument("--real-seed", type=int, default=None, help="base seed of a model on the REAL side (default: seed + 1000000007)")
    parser.add_argument("--is", dest="inception_score", action=argparse.BooleanOptionalAction, default=True, help="Inception Score on FAKE (default: on)")
    parser.add_argument("--kid", action=argparse.BooleanOptionalAction, default=True, help="Kernel Inception Distance (default: on)")
    parser.add_argument("--prdc", action=argparse.BooleanOptionalAction, default=False, help="precision/recall (k=3) and density/coverage (default: off)")
    parser.add_argument("--is-splits", type=int, default=10, help="IS splits (default: 10)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default: 100)")
    parser.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (default: 1000; reduced when a side has fewer)")
    parser.add_argument("--prdc-k", type=int, default=3, help="nearest-neighbour k of precision/recall/density/coverage (default: 3)")
    parser.add_argument("--output", default=None, help="also write the JSON to this file")
    return parser


def build_stats_parser() -> argparse.ArgumentParser:
    """The ``lightning-gen fid-stats`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lightning-gen fid-stats",
        description=(
            "Write the FID statistics (mu, sigma: the .npz layout of pytorch-fid and clean-fid, plus n and the "
            "protocol as JSON) of SOURCE: an image folder, a .ckpt of a GANModule/VAE or a zoo name. The file is "
            "accepted as either side of `lightning-gen fid` and as FIDCallback(real_stats=...)."
        ),
    )
    parser.add_argument("source", help="images to summarise: an image folder, a .ckpt or a zoo name")
    parser.add_argument("--out", required=True, help="the .npz file to write")
    _add_reading_options(parser)
    return parser


def _errors() -> tuple[type[BaseException], ...]:
    from lightning_gen.metrics import MissingInceptionWeightsError

    # User-facing failures (bad paths, missing weights, unknown zoo names, offline Hub, mismatched statistics) get
    # a one-line message; anything else is a bug and keeps its traceback.
    return (MissingInceptionWeightsError, OSError, ValueError, TypeError, LookupError)


def _reading_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        num_samples=args.num_samples,
        num_real=args.num_real,
        real_subset_seed=args.subset_seed,
        image_size=args.image_size,
        batch_size=args.batch_size,
        device=args.device,
        weights=args.weights,
        download=not args.no_download,
        feature_extractor=args.extractor,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        seed=args.seed,
        num_workers=args.num_workers,
        recursive=args.recursive,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen fid``; returns the exit code (0 ok, 1 error, 2 usage error)."""
    args = build_parser().parse_args(argv)
    from lightning_gen.metrics import evaluate

    metrics = ["fid"] + (["is"] if args.inception_score else []) + (["kid"] if args.kid else []) + (["prdc"] if args.prdc else [])
    try:
        result = evaluate(
            args.real,
            args.fake,
            metrics=metrics,
            real_seed=args.real_seed,
            is_splits=args.is_splits,
            kid_subsets=args.kid_subsets,
            kid_subset_size=args.kid_subset_size,
            prdc_k=args.prdc_k,
            **_reading_kwargs(args),
        )
    except _errors() as error:
        print(f"lightning-gen fid: error: {error}", file=sys.stderr)
        return 1
    text = result.to_json()
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


def stats_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen fid-stats``; returns the exit code (0 ok, 1 error, 2 usage error)."""
    args = build_stats_parser().parse_args(argv)
    from lightning_gen.metrics import compute_statistics, save_statistics

    if not args.out.lower().endswith(".npz"):
        print(f"lightning-gen fid-stats: error: --out must end in .npz, got {args.out!r}.", file=sys.stderr)
        return 2
    try:
        statistics = compute_statistics(args.source, **_reading_kwargs(args))
        path = save_statistics(args.out, statistics)
    except _errors() as error:
        print(f"lightning-gen fid-stats: error: {error}", file=sys.stderr)
        return 1
    protocol = statistics.protocol or {}
    print(f"wrote {path}: {statistics.count} images, {statistics.dim} features, extractor {protocol.get('extractor')}")
    return 0
