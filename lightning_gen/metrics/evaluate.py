"""Standalone evaluation: :func:`evaluate` (metrics between two sources) and :func:`compute_statistics` (one
source's FID statistics, for a ``.npz`` file). The command line (``lightning-gen fid``, ``lightning-gen fid-stats``)
is a thin layer over these in ``lightning_gen/cli/fid.py``.

Either side may be an image folder, a ``.npz`` statistics file, a Lightning checkpoint of a ``GANModule`` or
``VAE``, a zoo name, a module with ``sample(n, seed)`` or an image tensor (uint8, or float in [-1, 1]); see
``sources.py``. Generated images go straight from the model to the extractor (no PNG round trip). Statistics of a
real image folder are cached on disk (see ``cache.py``). KID, IS and PRDC never block FID: with too few samples
KID uses the largest valid subsets and IS / PRDC are skipped, each with a warning and a note in the protocol.
With the shapes classifier (``feature_extractor="shapes"``) the result also carries validity and factor coverage
(see ``shapes_fid.py``); with the digits classifier (``"digits"``) class coverage and validity (``digits_fid.py``).

Not here: distributed evaluation (use the callbacks inside a ``Trainer`` for that).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gen.metrics.cache import RealStatisticsCache
from lightning_gen.metrics.digits_classifier import DIGITS_CLASSIFIER_NAME
from lightning_gen.metrics.evaluator import MetricEvaluator, versions
from lightning_gen.metrics.extractors import build_extractor
from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.protocol import MetricResult, Protocol
from lightning_gen.metrics.shapes_classifier import SHAPES_CLASSIFIER_NAME
from lightning_gen.metrics.sources import DEFAULT_SUBSET_SEED, ImageSource, generate_batches, open_source
from lightning_gen.metrics.statistics import DEFAULT_RNG_SEED, frechet_distance
from lightning_gen.metrics.statistics_file import FIDStatistics

__all__ = ["METRIC_NAMES", "REAL_SEED_OFFSET", "compute_statistics", "evaluate", "generate_batches"]

METRIC_NAMES = ("fid", "is", "kid", "prdc")
#: A model on the real side is sampled from ``seed + REAL_SEED_OFFSET`` unless ``real_seed`` is given, so that
#: the two sides never share latents when both are models (batch b of one side would equal batch b + k of the other).
REAL_SEED_OFFSET = 1_000_000_007


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def evaluate(
    real: Any,
    fake: Any,
    *,
    metrics: Sequence[str] = ("fid", "is", "kid"),
    num_samples: int = 50_000,
    num_real: int | None = None,
    real_subset_seed: int = DEFAULT_SUBSET_SEED,
    image_size: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    weights: str | os.PathLike | None = None,
    download: bool = True,
    feature_extractor: str | nn.Module | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    seed: int = 0,
    real_seed: int | None = None,
    is_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prdc_k: int = 3,
    rng_seed: int = DEFAULT_RNG_SEED,
    num_workers: int | None = None,
    recursive: bool = True,
    progress: bool = False,
) -> MetricResult:
    """FID (and IS, KID, precision/recall/density/coverage) between real and generated images, with the protocol.

    IS is computed on ``fake``. With the defaults and Inception the numbers are those of
    ``torch_fidelity.calculate_metrics`` with ``input1=fake, input2=real`` (50k samples, 10 IS splits, KID 100
    subsets of 1000).

    Args:
        real: Image folder, ``.npz`` statistics file, ``.ckpt`` file, zoo name, model with ``sample(n, seed)`` or
            image tensor (N, C, H, W), uint8 or float in [-1, 1]. May be ``None`` when only ``"is"`` is requested.
        fake: Same choices.
        metrics: Any of ``"fid"``, ``"is"``, ``"kid"``, ``"prdc"`` (precision, recall, density, coverage).
        num_samples: Images generated for a model side (50k is what papers report).
        num_real: Use a seeded uniform random subset of this many images of a real folder; default all.
        real_subset_seed: Seed of that subset (recorded in the protocol).
        image_size: Resize folder images as ``ImageFolderDataModule(image_size=...)`` does (shorter side, centre
            crop); default: native size.
        batch_size: Images per generation and extraction batch.
        device: Where models and the extractor run; default CUDA when available.
        weights: Weights file of the extractor (else its environment variable, the torch hub cache, download).
        download: Whether missing weights may be downloaded.
        feature_extractor: A registered name (``"inception-v3-compat"``, the default; ``"dinov2-vit-l-14"``;
            see :func:`~lightning_gen.metrics.extractors.available_extractors`) or a module mapping uint8
            (N, 3, H, W) to (N, d) (non-standard: the protocol records ``standard=False``). ``"shapes"`` (images
            of the procedural shapes data only) makes ``fid`` the Fréchet Shapes Distance, also returned as
            ``fsd``, and adds, from the same classifier pass, ``validity``, ``real_validity`` and per-factor
            coverage (``factors``: total variation, coverage share, missing values, generated and real
            distributions), as :func:`~lightning_gen.metrics.evaluate_shapes` computes them; the result is then
            a :class:`~lightning_gen.metrics.shapes_fid.ShapesFIDResult` whose protocol records the validity
            threshold and the factors scored. With a ``.npz`` side only the FSD can be computed (the protocol
            notes say so). ``"digits"`` (handwritten digits) likewise makes ``fid`` the digits FD, also
            returned as ``digits_fd``, with class coverage and validity (a
            :class:`~lightning_gen.metrics.digits_fid.DigitsFIDResult`); conditional accuracy needs the
            samples' labels: :func:`~lightning_gen.metrics.evaluate_digits`.
        cache_dir: Directory of the real-statistics cache; default ``$LIGHTNING_GEN_CACHE/metrics`` or
            ``~/.cache/lightning_gen/metrics``.
        use_cache: Read and write the cache (folders only: other sources are not fingerprinted).
        seed: Base seed of generated samples (batch ``b`` uses ``seed + b``).
        real_seed: Base seed of a model on the real side; default ``seed + REAL_SEED_OFFSET``.
        is_splits: IS splits.
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size; reduced to the smaller side's count when needed (noted in the protocol).
        prdc_k: Nearest-neighbour k of PRDC.
        rng_seed: Seed of the IS split permutation and the KID subsets (torch-fidelity's 2020).
        num_workers: Folder decoding processes; default ``min(4, cpu count)``.
        recursive: Also read images in folders nested below the class folders.
        progress: Show progress bars on stderr.

    Returns:
        The values and their protocol (a :class:`~lightning_gen.metrics.shapes_fid.ShapesFIDResult` or
        :class:`~lightning_gen.metrics.digits_fid.DigitsFIDResult`, subclasses, for the classifier extractors).

    Raises:
        MissingInceptionWeightsError: The Inception weights are missing (message says where to get them).
        ValueError: Bad arguments, fewer than 2 images for FID, or a statistics file from another extractor.
    """
    metrics = list(dict.fromkeys(metrics))
    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {METRIC_NAMES}, got {tuple(metrics)}.")
    _check_int("batch_size", batch_size, 1)
    _check_int("num_samples", num_samples, 2)
    if num_real is not None:
        _check_int("num_real", num_real, 2)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    options = dict(
        num_samples=num_samples, batch_size=batch_size, device=device, image_size=image_size, recursive=recursive,
        num_workers=min(4, os.cpu_count() or 1) if num_workers is None else num_workers,
    )
    fake_source = open_source(fake, "fake", seed=seed, **options)
    needs_real = bool({"fid", "kid", "prdc"} & set(metrics))
    real_source = None
    if needs_real:
        real_seed = seed + REAL_SEED_OFFSET if real_seed is None else real_seed
        real_source = open_source(
            real, "real", seed=real_seed, num_real=num_real, subset_seed=real_subset_seed, **options
        )
    notes = [*(real_source.notes if real_source else []), *fake_source.notes]
    metrics = _applicable(metrics, real_source, fake_source, is_splits=is_splits, prdc_k=prdc_k, notes=notes)
    context = _context(real_source, fake_source, notes)
    if real_source is not None and real_source.kind == fake_source.kind == "statistics":
        result = _fid_of_two_files(real_source.statistics, fake_source.statistics, context)
        if result.protocol.extractor == SHAPES_CLASSIFIER_NAME:
            from lightning_gen.metrics.shapes_fid import fsd_only

            result = fsd_only(result, "validity and factor coverage not computed: both sides are statistics files")
        elif result.protocol.extractor == DIGITS_CLASSIFIER_NAME:
            from lightning_gen.metrics.digits_fid import DIGITS_COUNTS, digits_fd_only

            result = digits_fd_only(result, f"{DIGITS_COUNTS} not computed: both sides are statistics files")
        return result

    extractor = build_extractor(feature_extractor, weights=weights, download=download)
    evaluator = _build_evaluator(
        extractor,
        metrics,
        real_source,
        fake_source,
        is_splits=is_splits,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        prdc_k=prdc_k,
        rng_seed=rng_seed,
        device=device,
    )
    if real_source is not None:
        _add_real(evaluator, real_source, notes, cache_dir=cache_dir if use_cache else None, num_real=num_real,
                  subset_seed=real_subset_seed, use_cache=use_cache, progress=progress)
    if fake_source.kind == "statistics":
        _use_statistics_file(evaluator, fake_source.statistics, real=False, notes=notes)
    else:
        _feed(evaluator.update_fake, fake_source, "generated", progress)
    return evaluator.compute(**context)


def _build_evaluator(
    extractor: FeatureExtractor, metrics: list[str], real: ImageSource | None, fake: ImageSource, **settings: Any
) -> MetricEvaluator:
    """The evaluator of the requested metrics; for the shapes classifier the one that also counts factors."""
    requested = dict(fid="fid" in metrics, inception_score="is" in metrics, kid="kid" in metrics, prdc="prdc" in metrics)
    if extractor.name == SHAPES_CLASSIFIER_NAME:
        # Imported here: the shapes metrics pull in their callback; other extractors never need them.
        from lightning_gen.metrics.shapes_fid import ShapesMetricEvaluator, factor_counts_obstacle, is_shapes_extractor

        if is_shapes_extractor(extractor):
            obstacle = factor_counts_obstacle(metrics, real, fake)
            return ShapesMetricEvaluator(extractor, without_factors=obstacle, **requested, **settings)
    if extractor.name == DIGITS_CLASSIFIER_NAME:
        from lightning_gen.metrics.classifier_fid import counts_obstacle
        from lightning_gen.metrics.digits_fid import DIGITS_COUNTS, DigitsMetricEvaluator, is_digits_extractor

        if is_digits_extractor(extractor):
            obstacle = counts_obstacle(metrics, real, fake, DIGITS_COUNTS)
            return DigitsMetricEvaluator(extractor, without_counts=obstacle, **requested, **settings)
    return MetricEvaluator(extractor, **requested, **settings)


def compute_statistics(
    source: Any,
    *,
    num_real: int | None = None,
    real_subset_seed: int = DEFAULT_SUBSET_SEED,
    num_samples: int = 50_000,
    seed: int = 0,
    image_size: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    weights: str | os.PathLike | None = None,
    download: bool = True,
    feature_extractor: str | nn.Module | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    num_workers: int | None = None,
    recursive: bool = True,
    progress: bool = False,
) -> FIDStatistics:
    """FID statistics (mean, covariance, count and protocol) of one image source, e.g. to save with
    :func:`~lightning_gen.metrics.statistics_file.save_statistics` and reuse as either side of :func:`evaluate`.

    Arguments as in :func:`evaluate`; ``source`` is read like its ``real`` side (``num_real``, ``image_size``,
    ``seed`` for a model).
    """
    _check_int("batch_size", batch_size, 1)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    opened = open_source(
        source, "real", num_samples=num_samples, seed=seed, batch_size=batch_size, device=device,
        num_real=num_real, subset_seed=real_subset_seed, image_size=image_size, recursive=recursive,
        num_workers=min(4, os.cpu_count() or 1) if num_workers is None else num_workers,
    )
    if opened.kind == "statistics":
        return opened.statistics
    if opened.count is not None and opened.count < 2:
        raise ValueError(f"FID statistics need at least 2 images, {opened.description} has {opened.count}.")
    extractor = build_extractor(feature_extractor, weights=weights, download=download)
    evaluator = MetricEvaluator(extractor, fid=True, device=device)
    notes = list(opened.notes)
    _add_real(evaluator, opened, notes, cache_dir=cache_dir, num_real=num_real, subset_seed=real_subset_seed,
              use_cache=use_cache, progress=progress)
    mu, sigma, count = evaluator.fid.statistics(real=True)
    context = _context(opened, None, notes)
    protocol = Protocol(
        extractor=extractor.name,
        weights_sha256=extractor.fingerprint,
        standard=extractor.standard,
        resize=extractor.resize,
        n_real=count,
        n_fake=None,
        extractor_numerics=extractor.numerics(),
        versions=versions(),
        **context,
    )
    return FIDStatistics(mu=mu.cpu().numpy(), sigma=sigma.cpu().numpy(), count=count, protocol=protocol.to_dict())


def _context(real: ImageSource | None, fake: ImageSource | None, notes: list[str]) -> dict[str, Any]:
    """Protocol fields that describe the sources (everything the evaluator cannot know)."""
    context: dict[str, Any] = {"notes": notes}
    if real is not None:
        context.update(
            split=real.description,
            real_fingerprint=real.fingerprint,
            real_sample_seed=real.sample_seed,
            real_subset_seed=real.subset_seed,
            real_decoding=real.decoding,
            real_resize=real.resize,
        )
    if fake is not None:
        context.update(fake_source=f"{fake.kind}: {fake.description}", sample_seed=fake.sample_seed)
    return context


def _applicable(
    metrics: list[str], real: ImageSource | None, fake: ImageSource, *, is_splits: int, prdc_k: int, notes: list[str]
) -> list[str]:
    """Drop the metrics the inputs cannot support, with a warning and a note; FID itself is never dropped."""
    kept = list(metrics)

    def skip(name: str, reason: str) -> None:
        if name in kept:
            kept.remove(name)
            notes.append(f"{name} skipped: {reason}")
            warnings.warn(f"{name.upper()} skipped: {reason}", stacklevel=3)

    sources = [source for source in (real, fake) if source is not None]
    for source in sources:
        if source.kind == "statistics":
            for name in ("kid", "prdc"):
                skip(name, f"{source.description} holds only mean and covariance, and {name} needs features")
            if source is fake:
                skip("is", f"{source.description} holds no logits")
    if "is" in kept and fake.count is not None and fake.count < is_splits:
        skip("is", f"{fake.count} generated images are fewer than is_splits={is_splits}")
    for source in sources:
        if "prdc" in kept and source.count is not None and source.count <= prdc_k:
            skip("prdc", f"{source.description} has {source.count} images, k-NN balls need more than k={prdc_k}")
        if "fid" in kept and source.count is not None and source.count < 2:
            raise ValueError(f"FID needs at least 2 images per side, {source.description} has {source.count}.")
    if not kept:
        raise ValueError(f"None of the requested metrics {tuple(metrics)} can be computed: {'; '.join(notes)}.")
    return kept


def _fid_of_two_files(real: FIDStatistics, fake: FIDStatistics, context: dict[str, Any]) -> MetricResult:
    """FID of two statistics files: no extractor is needed, but both must come from the same one."""
    if real.dim != fake.dim:
        raise ValueError(
            f"{real.path} has {real.dim} features and {fake.path} has {fake.dim}: they come from different extractors."
        )
    notes = context["notes"]
    first, second = real.protocol or {}, fake.protocol or {}
    hashes = {first.get("weights_sha256"), second.get("weights_sha256")} - {None}
    if len(hashes) > 1:
        raise ValueError(
            f"{real.path} and {fake.path} were computed with different extractor weights "
            f"({' vs '.join(sorted(hashes))}); their FID would mean nothing."
        )
    if not (first and second):
        notes.append("a statistics file without protocol metadata: the extractor could not be checked")
    known = first or second
    value = frechet_distance(*real.tensors(), *fake.tensors())
    protocol = Protocol(
        extractor=known.get("extractor", "unknown (statistics files)"),
        weights_sha256=known.get("weights_sha256", "unknown"),
        standard=bool(first.get("standard") and second.get("standard")),
        resize=known.get("resize", "unknown"),
        n_real=real.count,
        n_fake=fake.count,
        extractor_numerics=known.get("extractor_numerics", {}),
        versions=versions(),
        **context,
    )
    return MetricResult(protocol=protocol, fid=value)


def _use_statistics_file(evaluator: MetricEvaluator, statistics: FIDStatistics, *, real: bool, notes: list[str]) -> None:
    """Install a statistics file as one side of the FID, after checking it came from the evaluator's extractor."""
    extractor: FeatureExtractor = evaluator.extractor
    recorded = (statistics.protocol or {}).get("weights_sha256")
    if recorded is not None and recorded != extractor.fingerprint:
        raise ValueError(
            f"{statistics.path} was computed with {statistics.protocol.get('extractor')} weights sha256 {recorded}, "
            f"but this evaluation uses {extractor.name} with weights sha256 {extractor.fingerprint}. Pass the same "
            f"extractor and weights (--extractor / --weights), or recompute the statistics with lightning-gen fid-stats."
        )
    if recorded is None:
        notes.append(
            f"{statistics.path} carries no protocol metadata: assumed to be computed with {extractor.name} "
            f"(e.g. by pytorch-fid or clean-fid), which could not be verified"
        )
    mu, sigma = statistics.tensors()
    evaluator.fid.set_statistics(real, mu, sigma, statistics.count)


def _add_real(
    evaluator: MetricEvaluator, source: ImageSource, notes: list[str], *, cache_dir: str | os.PathLike | None,
    num_real: int | None, subset_seed: int, use_cache: bool, progress: bool,
) -> None:
    """Feed the real side, from the cache when the source is fingerprinted and its statistics are there."""
    if source.kind == "statistics":
        _use_statistics_file(evaluator, source.statistics, real=True, notes=notes)
        return
    cache = RealStatisticsCache(cache_dir) if use_cache and source.fingerprint is not None else None
    keys = {}
    if cache is not None:
        keys = {
            kind: cache.key(
                kind=kind, data_fingerprint=source.fingerprint, extractor_fingerprint=evaluator.cache_fingerprint,
                num_real=num_real, subset_seed=subset_seed,
            )
            for kind in evaluator._real_metrics()
        }
    cached = {kind: cache.load(key) for kind, key in keys.items()} if cache is not None else {}
    if cached and all(payload is not None for payload in cached.values()):
        evaluator.load_real_payloads(cached)
        return
    _feed(evaluator.update_real, source, "real statistics", progress)
    if cache is not None:
        for kind, payload in evaluator.real_payloads().items():
            cache.save(keys[kind], {"kind": kind, "source": source.description, **payload})


def _feed(update: Callable[[Tensor], None], source: ImageSource, what: str, progress: bool) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=source.count, desc=what, unit="img", disable=not progress, leave=False, file=sys.stderr) as bar:
        for images in source.batches():
            update(images)
            bar.update(images.shape[0])
