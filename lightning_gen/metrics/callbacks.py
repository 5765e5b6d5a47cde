"""Lightning callbacks that track FID, IS, KID and precision/recall/density/coverage of a generative model.

They work with any LightningModule that has ``sample(n, seed=None)`` returning float images in [-1, 1]
(``GANModule``, ``VAE``). Every ``every_n_epochs`` epochs (or ``every_n_steps`` generator steps) they generate
``num_samples`` images with fixed seeds (the same latents every time, so successive values differ only because
the model changed), extract features in batches and log ``val/fid``, ``val/is``, ``val/is_std``, ``val/kid``,
``val/kid_std`` (and ``val/precision``, ``val/recall``, ``val/density``, ``val/coverage``) through
``pl_module.log``, so ``ModelCheckpoint(monitor="val/fid", mode="min")`` and ``EarlyStopping`` work. Real images come
from the data module's ``split``, read without augmentation (no random flips), all of them or a seeded uniform
random subset of ``num_real``; their statistics are computed once per run and cached on disk by
``datamodule.fingerprint(split)``. Or they come from a ``.npz`` statistics file (``real_stats=``).

Under DDP each process generates its share of the batches and the metric states are reduced across processes;
every process computes the same value and logs it (no process waits on a collective the others skip).

Each evaluation is also appended, with its protocol, to ``generative_metrics.jsonl`` in ``trainer.log_dir``.

Not here: the metric formulas (``statistics.py``) and standalone evaluation (``evaluate.py``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, Subset

from lightning_gen.metrics.cache import RealStatisticsCache
from lightning_gen.metrics.evaluator import MetricEvaluator
from lightning_gen.metrics.extractors import build_extractor
from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.inception import MissingWeightsError
from lightning_gen.metrics.protocol import VALUE_NAMES, MetricResult
from lightning_gen.metrics.sources import DEFAULT_SUBSET_SEED, describe_datamodule_reading, real_subset_indices
from lightning_gen.metrics.statistics import DEFAULT_RNG_SEED
from lightning_gen.metrics.statistics_file import FIDStatistics, load_statistics

__all__ = ["FIDCallback", "GenerativeMetricsCallback", "InceptionScoreCallback", "KIDCallback"]

PROTOCOL_FILE = "generative_metrics.jsonl"


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


class GenerativeMetricsCallback(Callback):
    """Base of :class:`FIDCallback`, :class:`InceptionScoreCallback` and :class:`KIDCallback`: any subset of
    FID / IS / KID / PRDC from one pass of generation and feature extraction.

    When to evaluate: with ``every_n_epochs``, at the end of the first validation run of a due epoch when the
    trainer validates (so monitors that check after validation see the value), otherwise at the end of the
    training epoch. With ``every_n_steps``, after the training batch in which the module's ``generator_step`` (else
    ``trainer.global_step``) reaches a multiple of it. ``trainer.validate()`` always evaluates.

    Args:
        fid: Compute FID (logged as ``<prefix>fid``).
        inception_score: Compute IS (``<prefix>is``, ``<prefix>is_std``).
        kid: Compute KID (``<prefix>kid``, ``<prefix>kid_std``). With fewer samples than ``kid_subset_size`` the
            largest valid subsets are used (the protocol's notes say so).
        precision_recall: Compute precision and recall (k=3, Kynkäänniemi et al.) and density and coverage (Naeem
            et al.) on the same features (``<prefix>precision``, ``recall``, ``density``, ``coverage``).
        every_n_epochs: Evaluate every N epochs. Default 1 when ``every_n_steps`` is not given.
        every_n_steps: Evaluate every N generator steps instead.
        num_samples: Generated images per evaluation (papers report 50k; 10k is a common training-time proxy).
        num_real: Real images to use from ``split``: a seeded uniform random subset (default: all). With DDP each
            process reads a slice of it.
        real_subset_seed: Seed of that subset (recorded in the protocol).
        split: Data module split the real images come from (``"train"`` or ``"val"``). The images are read as its
            loader decodes them but without random flips (the library's data modules; other loaders as they are).
        real_stats: A ``.npz`` statistics file (``mu``, ``sigma``; from ``lightning-gen fid-stats``, pytorch-fid
            or clean-fid) to use as the real side of the FID instead of reading ``split``. FID only.
        batch_size: Images per generation / extraction batch.
        seed: Base seed: generated batch ``b`` is ``sample(size, seed=seed + b)``, on whichever process makes it.
        weights: Weights file of the extractor (else its environment variable, torch hub cache, download).
        download: Whether missing weights may be downloaded.
        feature_extractor: A registered extractor name (default ``"inception-v3-compat"``; ``"dinov2-vit-l-14"``
            for FD_DINOv2) or a module mapping uint8 (N, 3, H, W) to (N, d) (non-standard: values are not
            comparable with published ones; give it a ``num_features`` attribute to skip a probe).
        on_missing_weights: ``"raise"`` (fail at fit start) or ``"warn"`` (warn and skip all evaluations) when the
            extractor's weights are missing.
        cache_dir: Directory of the real-statistics cache (default ``$LIGHTNING_GEN_CACHE/metrics`` or
            ``~/.cache/lightning_gen/metrics``).
        use_cache: Read and write that cache (needs ``datamodule.fingerprint(split)``).
        progress: Show a progress bar (process 0 only, and only when the trainer shows one).
        is_splits, kid_subsets, kid_subset_size, prdc_k, rng_seed: Protocol settings (standard: 10, 100, 1000, 3,
            2020).
        prefix: Prefix of the logged names.
        protocol_file: File name in ``trainer.log_dir`` receiving one JSON line per evaluation (values, epoch,
            step and protocol); ``None`` disables it.

    Memory: FID state is fixed (running sums, 32 MiB for Inception); IS keeps 4 KiB per generated image, KID and
    PRDC 8 KiB each per real and per generated image, on the module's device (see ``statistics.py``, ``prdc.py``).

    Attributes:
        last_result: :class:`~lightning_gen.metrics.protocol.MetricResult` of the latest evaluation.
    """

    def __init__(
        self,
        *,
        fid: bool = True,
        inception_score: bool = False,
        kid: bool = False,
        precision_recall: bool = False,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        num_samples: int = 10_000,
        num_real: int | None = None,
        real_subset_seed: int = DEFAULT_SUBSET_SEED,
        split: str = "train",
        real_stats: str | os.PathLike | None = None,
        batch_size: int = 64,
        seed: int = 0,
        weights: str | os.PathLike | None = None,
        download: bool = True,
        feature_extractor: str | nn.Module | None = None,
        on_missing_weights: str = "raise",
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        progress: bool = True,
        is_splits: int = 10,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        prdc_k: int = 3,
        rng_seed: int = DEFAULT_RNG_SEED,
        prefix: str = "val/",
        protocol_file: str | None = PROTOCOL_FILE,
    ) -> None:
        super().__init__()
        if not (fid or inception_score or kid or precision_recall):
            raise ValueError("Nothing to compute: enable at least one of fid, inception_score, kid, precision_recall.")
        if every_n_epochs is not None and every_n_steps is not None:
            raise ValueError(
                f"Give every_n_epochs ({every_n_epochs}) or every_n_steps ({every_n_steps}), not both."
            )
        if every_n_steps is None:
            every_n_epochs = 1 if every_n_epochs is None else every_n_epochs
            _positive_int("every_n_epochs", every_n_epochs)
        else:
            _positive_int("every_n_steps", every_n_steps)
        _positive_int("batch_size", batch_size)
        _positive_int("num_samples", num_samples, 2)
        if num_real is not None:
            _positive_int("num_real", num_real, 2)
        if inception_score and num_samples < is_splits:
            raise ValueError(f"num_samples={num_samples} is below is_splits={is_splits}; every IS split needs images.")
        if precision_recall and num_samples <= prdc_k:
            raise ValueError(f"num_samples={num_samples} must exceed prdc_k={prdc_k} for k-NN balls.")
        self.real_statistics: FIDStatistics | None = None
        if real_stats is not None:
            if kid or precision_recall:
                raise ValueError(
                    f"real_stats={str(real_stats)!r} holds only a mean and covariance: KID and precision_recall need "
                    f"the real images. Drop real_stats or those metrics."
                )
            self.real_statistics = load_statistics(real_stats)
        if on_missing_weights not in ("raise", "warn"):
            raise ValueError(f"on_missing_weights must be 'raise' or 'warn', got {on_missing_weights!r}.")
        self.metrics = {"fid": fid, "inception_score": inception_score, "kid": kid, "prdc": precision_recall}
        self.every_n_epochs = every_n_epochs
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.num_real = num_real
        self.real_subset_seed = real_subset_seed
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.weights = weights
        self.download = download
        self.feature_extractor = feature_extractor
        self.on_missing_weights = on_missing_weights
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.progress = progress
        self.protocol_settings = {
            "is_splits": is_splits,
            "kid_subsets": kid_subsets,
            "kid_subset_size": kid_subset_size,
            "prdc_k": prdc_k,
            "rng_seed": rng_seed,
        }
        self.prefix = prefix
        self.protocol_file = protocol_file
        self.last_result: MetricResult | None = None
        self._extractor: FeatureExtractor | None = None
        self._evaluator: MetricEvaluator | None = None
        self._disabled = False
        self._real_ready = False
        self._real_fingerprint: str | None = None
        self._real_description: str | None = None
        self._real_reading: tuple[str | None, str | None] = (None, None)
        self._real_subset_used = False
        self._notes: list[str] = []
        self._evaluated_epoch = -1
        self._last_step_bucket = 0

    # ------------------------------------------------------------------------------------ Lightning hooks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage not in ("fit", "validate"):
            return
        if not callable(getattr(pl_module, "sample", None)):
            raise TypeError(
                f"{type(self).__name__} needs a module with sample(n, seed=None) returning images in [-1, 1]; "
                f"{type(pl_module).__name__} has none."
            )
        if self._extractor is None and not self._disabled:
            self._extractor = self._build_extractor(trainer)
        if self._extractor is not None:
            # A fresh evaluator per run: real statistics belong to this run's data module.
            self._evaluator = MetricEvaluator(self._extractor, **self.metrics, **self.protocol_settings)
            self._real_ready = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run continues the schedule instead of evaluating at its first batch.
        if self.every_n_steps is not None:
            self._last_step_bucket = self._generator_step(trainer, pl_module) // self.every_n_steps

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.every_n_steps is None:
            return
        bucket = self._generator_step(trainer, pl_module) // self.every_n_steps
        if bucket > self._last_step_bucket:
            self._last_step_bucket = bucket
            self._evaluate(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == "validate":
            self._evaluate(trainer, pl_module)
        elif trainer.state.fn == "fit":
            self._maybe_evaluate_epoch(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning runs this before ModelCheckpoint's and EarlyStopping's own on_train_epoch_end, whatever the
        # order of the callbacks list, so they see the value logged here.
        self._maybe_evaluate_epoch(trainer, pl_module)

    # ---------------------------------------------------------------------------------------- internals

    def _maybe_evaluate_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.every_n_epochs is None or (epoch + 1) % self.every_n_epochs or self._evaluated_epoch == epoch:
            return
        self._evaluated_epoch = epoch
        self._evaluate(trainer, pl_module)

    @staticmethod
    def _generator_step(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
        # With manual optimization trainer.global_step counts the steps of every optimizer; the library's modules
        # count generator updates themselves.
        step = getattr(pl_module, "generator_step", None)
        return int(step) if step is not None else trainer.global_step

    def _build_extractor(self, trainer: pl.Trainer) -> FeatureExtractor | None:
        if isinstance(self.feature_extractor, nn.Module):
            return FeatureExtractor.custom(self.feature_extractor)
        # Process 0 resolves first (and downloads if needed); the outcome is shared so that every process takes
        # the same path: raising or skipping on one process only would leave the others waiting forever.
        error = None
        extractor = None
        if trainer.is_global_zero:
            try:
                extractor = build_extractor(self.feature_extractor, weights=self.weights, download=self.download)
            except MissingWeightsError as missing:
                error = (type(missing), str(missing))  # the class travels too: callers catch the specific one
        error = trainer.strategy.broadcast(error)
        if error is not None:
            error_type, error = error
            if self.on_missing_weights == "raise":
                raise error_type(
                    f"{error}\nOr construct {type(self).__name__}(on_missing_weights='warn') to train without it."
                )
            rank_zero_warn(f"{type(self).__name__} is disabled, no metric will be logged: {error}")
            self._disabled = True
            return None
        if extractor is None:
            extractor = build_extractor(self.feature_extractor, weights=self.weights, download=self.download)
        return extractor

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._disabled or self._evaluator is None:
            return
        started = time.perf_counter()
        evaluator = self._evaluator
        if evaluator.device != pl_module.device:
            evaluator.to(pl_module.device)
        if evaluator.needs_real and not self._real_ready:
            self._prepare_real(trainer)
        # Restore each submodule's own mode afterwards, not a blanket train(): some (e.g. an EMA copy) stay in eval.
        modes = [(module, module.training) for module in pl_module.modules()]
        pl_module.eval()
        try:
            with torch.no_grad():
                for batch in self._progress(trainer, self._generated_batches(trainer, pl_module), "generating"):
                    self._add_fake(evaluator, batch)
        finally:
            for module, mode in modes:
                module.training = mode
        decoding, resize = self._real_reading
        result = evaluator.compute(
            split=self._real_description if evaluator.needs_real else None,
            real_fingerprint=self._real_fingerprint,
            sample_seed=self.seed,
            real_subset_seed=self.real_subset_seed if self._real_subset_used else None,
            real_decoding=decoding,
            real_resize=resize,
            fake_source=f"model: {type(pl_module).__name__}.sample() (EMA generator when present)",
            notes=list(self._notes),
        )
        evaluator.reset_fake()
        self.last_result = result
        self._log(pl_module, result)
        self._write_protocol(trainer, pl_module, result, time.perf_counter() - started)

    def _generated_batches(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Iterator[Tensor]:
        # The global list of batches is the same for any number of processes; each takes a contiguous block, so
        # gathering in rank order reproduces the single-process order (which IS and KID depend on).
        num_batches = math.ceil(self.num_samples / self.batch_size)
        rank, world = trainer.global_rank, trainer.world_size
        for index in range(rank * num_batches // world, (rank + 1) * num_batches // world):
            size = min(self.batch_size, self.num_samples - index * self.batch_size)
            yield pl_module.sample(size, seed=self.seed + index)

    def _prepare_real(self, trainer: pl.Trainer) -> None:
        evaluator = self._evaluator
        self._notes = []
        if self.real_statistics is not None:
            self._install_real_statistics()
            return
        datamodule = trainer.datamodule
        if datamodule is None:
            raise RuntimeError(
                f"{type(self).__name__} compares with real images from a LightningDataModule: call "
                f"trainer.fit(model, datamodule=...) (e.g. ImageFolderDataModule), or pass real_stats=stats.npz."
            )
        self._real_description = f"{type(datamodule).__name__}:{self.split}"
        self._real_reading = describe_datamodule_reading(datamodule, self.split)
        self._real_fingerprint = None
        if callable(getattr(datamodule, "fingerprint", None)):
            try:
                self._real_fingerprint = datamodule.fingerprint(self.split)
            except NotImplementedError:  # lightning-gen's base data module declares it without defining it
                pass
        cache = None
        if self.use_cache and self._real_fingerprint is not None:
            cache = RealStatisticsCache(self.cache_dir)
        elif self.use_cache:
            rank_zero_warn(
                f"{type(datamodule).__name__} has no fingerprint(split) method, so real statistics cannot be cached "
                f"and are recomputed in every run."
            )
        keys = {}
        if cache is not None:
            for kind in evaluator._real_metrics():
                keys[kind] = cache.key(
                    kind=kind,
                    data_fingerprint=self._real_fingerprint,
                    extractor_fingerprint=evaluator.extractor.fingerprint,
                    num_real=self.num_real,
                    subset_seed=self.real_subset_seed,
                )
        payloads = None
        if keys and trainer.is_global_zero:
            payloads = {kind: cache.load(key) for kind, key in keys.items()}
            payloads = payloads if all(p is not None for p in payloads.values()) else None
        # Decided by process 0 for all: what follows is collective and every process must take the same branch.
        if trainer.strategy.broadcast(payloads is not None):
            if trainer.is_global_zero:
                # The other processes keep empty real states: the reduction sums (FID) or concatenates (KID, PRDC)
                # them with these, so the cached statistics count exactly once.
                evaluator.load_real_payloads(payloads)
            # Whether a subset was drawn depends on the split's length, which the cache entry does not hold.
            self._real_subset_used = self.num_real is not None
        else:
            self._feed_real(trainer, datamodule)
            payloads = evaluator.real_payloads()
            if cache is not None and trainer.is_global_zero:
                for kind, key in keys.items():
                    cache.save(key, {"kind": kind, "source": self._real_description, **payloads[kind]})
        self._real_ready = True

    def _install_real_statistics(self) -> None:
        """Use the ``real_stats`` file as the real side of the FID, after checking it fits the extractor."""
        statistics, evaluator = self.real_statistics, self._evaluator
        recorded = (statistics.protocol or {}).get("weights_sha256")
        if recorded is not None and recorded != evaluator.extractor.fingerprint:
            raise ValueError(
                f"real_stats={statistics.path!r} was computed with weights sha256 {recorded}, but this run's "
                f"{evaluator.extractor.name} has {evaluator.extractor.fingerprint}; recompute it with "
                f"`lightning-gen fid-stats` and the same extractor."
            )
        self._notes = [] if recorded is not None else [f"{statistics.path} carries no protocol metadata; its extractor could not be verified"]
        evaluator.fid.set_statistics(True, *statistics.tensors(), statistics.count)
        protocol = statistics.protocol or {}
        self._real_description = f"statistics file {statistics.path}"
        self._real_fingerprint = protocol.get("real_fingerprint")
        self._real_reading = (protocol.get("real_decoding"), protocol.get("real_resize"))
        self._real_ready = True

    def _feed_real(self, trainer: pl.Trainer, datamodule: pl.LightningDataModule) -> int:
        """Add this process's share of the real images; returns the total over all processes."""
        make_loader = getattr(datamodule, f"{self.split}_dataloader", None)
        loader = make_loader() if callable(make_loader) else None
        if not isinstance(loader, DataLoader):
            raise ValueError(
                f"{type(datamodule).__name__}.{self.split}_dataloader() must return a DataLoader of real images for "
                f"{type(self).__name__}(split={self.split!r}), got {type(loader).__name__}."
            )
        dataset = loader.dataset
        rank, world = trainer.global_rank, trainer.world_size
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
            # Processes cannot tell which items of a stream are theirs; process 0 reads them all.
            batches = loader if rank == 0 else []
            total = None
            if self.num_real is not None:
                self._notes.append(f"{self.split} is a stream: its first {self.num_real} images were used, not a random subset")
        else:
            # A seeded uniform random subset of the whole split (the first num_real would cover only the first
            # classes of a class-sorted folder); every process draws the same one and reads its contiguous slice.
            chosen = real_subset_indices(len(dataset), self.num_real, self.real_subset_seed)
            self._real_subset_used = len(chosen) < len(dataset)
            total = len(chosen)
            if self.num_real is not None and len(dataset) < self.num_real:
                rank_zero_warn(f"num_real={self.num_real} but split {self.split!r} has only {len(dataset)} images.")
            shard = Subset(dataset, chosen[rank * total // world : (rank + 1) * total // world])
            # A deterministic, un-shuffled loader, built like the data module's own (same class and collate
            # function, so the batches have the same form). Read by plain indices, the library's training datasets
            # give the images as stored: their random flips belong to the training sampler's (epoch, index) keys,
            # and real statistics describe the images, not one draw of their augmentation.
            options = dict(batch_size=self.batch_size, shuffle=False, num_workers=loader.num_workers,
                           collate_fn=loader.collate_fn, pin_memory=loader.pin_memory)
            if loader.num_workers > 0:
                options["multiprocessing_context"] = loader.multiprocessing_context
            try:
                batches = type(loader)(shard, **options)
            except TypeError:  # a DataLoader subclass with its own constructor
                batches = DataLoader(shard, **options)
        limit = total if total is not None else self.num_real
        seen = 0
        for batch in self._progress(trainer, batches, "real statistics"):
            images, labels = _images_of(batch), _labels_of(batch)
            if limit is not None and seen + images.shape[0] > limit:
                images = images[: limit - seen]
                labels = None if labels is None else labels[: limit - seen]
            self._add_real(images, labels)
            seen += images.shape[0]
            if limit is not None and seen >= limit:
                break
        if total is None:
            total = trainer.strategy.broadcast(seen)
        return total

    def _add_real(self, images: Tensor, labels: Tensor | None) -> None:
        """Add one batch of real images (and their labels, when the loader gives them) to the evaluator."""
        self._evaluator.update_real(images)

    def _add_fake(self, evaluator: MetricEvaluator, batch: Any) -> None:
        """Add one item of :meth:`_generated_batches` (a batch of images here) to the evaluator."""
        evaluator.update_fake(batch)

    def _progress(self, trainer: pl.Trainer, iterable: Any, what: str) -> Any:
        if not (self.progress and trainer.is_global_zero and trainer.progress_bar_callback is not None):
            return iterable
        from tqdm.auto import tqdm

        name = "/".join(k for k, v in self.metrics.items() if v)
        return tqdm(iterable, desc=f"{name}: {what}", unit="batch", leave=False, dynamic_ncols=True)

    def _log(self, pl_module: pl.LightningModule, result: MetricResult) -> None:
        names = {name: name for name in VALUE_NAMES}
        names.update(inception_score="is", inception_score_std="is_std")
        main = next(attr for attr in ("fid", "inception_score", "kid", "precision") if getattr(result, attr) is not None)
        for attr, name in names.items():
            value = getattr(result, attr)
            if value is None:
                continue
            # Every process holds the same value (computed from reduced states) and logs it: sync_dist's mean
            # of identical values changes nothing and keeps Lightning's multi-process bookkeeping consistent.
            pl_module.log(f"{self.prefix}{name}", value, prog_bar=attr == main, sync_dist=True, batch_size=1)

    def _write_protocol(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, result: MetricResult, seconds: float
    ) -> None:
        if self.protocol_file is None:
            return
        log_dir = trainer.log_dir  # a collective: every process must ask
        if not trainer.is_global_zero or log_dir is None:
            return
        record = {
            "callback": type(self).__name__,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "generator_step": self._generator_step(trainer, pl_module),
            "seconds": round(seconds, 3),
            **result.to_dict(),
        }
        path = Path(log_dir) / self.protocol_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def _images_of(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(
        f"Expected real batches to be images or (images, labels) tuples, got {type(batch).__name__}; the data "
        f"module's loader should yield uint8 (B, C, H, W) tensors."
    )


def _labels_of(batch: Any) -> Tensor | None:
    if isinstance(batch, (tuple, list)) and len(batch) > 1 and isinstance(batch[1], Tensor):
        return batch[1]
    return None


class FIDCallback(GenerativeMetricsCallback):
    """Log the FID of generated against real images (``val/fid``) during training.

    KID and IS can come from the same samples and features at almost no extra cost with ``kid=True`` /
    ``inception_score=True``; that is cheaper than adding :class:`KIDCallback` or :class:`InceptionScoreCallback`,
    which generate and extract separately.

    Args:
        kid: Also compute KID (``val/kid``, ``val/kid_std``).
        inception_score: Also compute IS (``val/is``, ``val/is_std``).
        precision_recall: Also compute precision/recall and density/coverage (``val/precision``, ``val/recall``,
            ``val/density``, ``val/coverage``).
        **kwargs: Schedule, sample counts, data split, weights and protocol settings; see
            :class:`GenerativeMetricsCallback`.

    Example:
        >>> from lightning.pytorch.callbacks import ModelCheckpoint
        >>> callbacks = [FIDCallback(every_n_epochs=5, num_samples=10_000),
        ...              ModelCheckpoint(monitor="val/fid", mode="min")]
    """

    def __init__(
        self, *, kid: bool = False, inception_score: bool = False, precision_recall: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(fid=True, inception_score=inception_score, kid=kid, precision_recall=precision_recall, **kwargs)


class InceptionScoreCallback(GenerativeMetricsCallback):
    """Log the Inception Score of generated images (``val/is``, ``val/is_std``); needs no real images.

    Args:
        **kwargs: See :class:`GenerativeMetricsCallback` (``num_real``, ``split`` and the cache are unused).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("precision_recall", False)
        super().__init__(fid=False, inception_score=True, kid=False, **kwargs)


class KIDCallback(GenerativeMetricsCallback):
    """Log the Kernel Inception Distance (``val/kid``, ``val/kid_std``) during training.

    Memory: KID keeps every real and generated feature vector (8 KiB each with Inception) on the module's device.

    Args:
        **kwargs: See :class:`GenerativeMetricsCallback`; with fewer than ``kid_subset_size`` samples on a side the
            largest valid subsets are used (noted in the protocol).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("precision_recall", False)
        super().__init__(fid=False, inception_score=False, kid=True, **kwargs)
