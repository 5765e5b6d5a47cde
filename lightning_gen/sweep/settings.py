"""The settings every trial of a sweep shares: the budget, the evaluation schedule, the metric protocol, the objective.

They are stored in the study when it is created, so every worker and every trial process uses the same ones.

Example:
    >>> settings = SweepSettings(generator_steps=500, eval_every=100, objective="fsd", metrics=("shapes",))
    >>> settings.resolved_direction
    'minimize'
    >>> SweepSettings.from_dict(settings.to_dict()) == settings
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["PRUNERS", "SAMPLERS", "SweepSettings"]

# Optuna samplers and pruners by the names the command line takes (built in lightning_gen.sweep.study). Kept here,
# free of Optuna, so that `lightning-gen sweep` builds its parser and reports usage errors without importing it.
SAMPLERS = ("tpe", "random", "qmc", "gp")
PRUNERS = ("median", "hyperband", "none")

# Metrics where lower is better; every other objective is maximised unless --direction says otherwise.
_LOWER_IS_BETTER = ("fid", "fsd", "kid", "tv", "distance", "loss", "fd_")


@dataclass(frozen=True)
class SweepSettings:
    """What every trial shares: the budget, the evaluation schedule, the metric protocol and the objective.

    Args:
        generator_steps: Train each trial for this many generator updates (the modules' ``generator_step``;
            Lightning's ``global_step`` counts every optimizer's steps). Exclusive with ``epochs``.
        epochs: Train each trial for this many epochs instead.
        eval_every: Evaluate every N generator steps; the end of training is always evaluated.
        metrics: Metric callbacks each trial runs: ``"fid"`` (:class:`~lightning_gen.metrics.FIDCallback`, with IS
            and KID when enabled) and/or ``"shapes"`` (the shapes evaluator: FSD, coverage, validity).
        objective: The recorded metric the study optimises and the pruner watches (``fid``, ``kid``, ``fsd``...:
            the logged name without its ``val/`` prefix).
        direction: ``"minimize"`` or ``"maximize"``; ``None`` picks it from the objective's name.
        num_samples: Generated images per evaluation (batch ``b`` is ``sample(size, seed=sample_seed + b)``: the
            same latents for every trial and evaluation).
        num_real: Real images from ``split`` (default: all); their statistics are computed once and cached.
        split: Data module split the real images come from.
        metrics_batch_size: Images per generation and feature-extraction batch.
        sample_seed: Base seed of the evaluation samples.
        inception_score: Also compute IS (with ``"fid"``).
        kid: Also compute KID (with ``"fid"``).
        kid_subset_size: KID subset size (default: min(1000, num_samples, num_real)).
        kid_subsets: KID subsets.
        is_splits: IS splits.
        weights: FID Inception weights file (else ``$LIGHTNING_GEN_INCEPTION_WEIGHTS``, the torch hub cache, then a
            download when ``download``).
        download: Whether missing Inception weights may be downloaded.
        feature_extractor: ``MODULE:FACTORY`` of a custom feature network for ``"fid"`` instead of Inception
            (importable by every worker; values are then not comparable with published ones).
        cache_dir: Real-statistics cache (default: the metrics' default cache).
        accelerator: Trainer accelerator for every trial (default: each config's).
        devices: Trainer ``devices`` for every trial (default: each config's). DDP stays inside the trial's process.
    """

    generator_steps: int | None = None
    epochs: int | None = None
    eval_every: int | None = None
    metrics: tuple[str, ...] = ("fid",)
    objective: str = "fid"
    direction: str | None = None
    num_samples: int = 1000
    num_real: int | None = None
    split: str = "train"
    metrics_batch_size: int = 64
    sample_seed: int = 0
    inception_score: bool = True
    kid: bool = True
    kid_subset_size: int | None = None
    kid_subsets: int = 100
    is_splits: int = 10
    weights: str | None = None
    download: bool = True
    feature_extractor: str | None = None
    cache_dir: str | None = None
    accelerator: str | None = None
    devices: Any = None

    def __post_init__(self) -> None:
        if (self.generator_steps is None) == (self.epochs is None):
            raise ValueError(
                f"Give exactly one shared budget: generator_steps ({self.generator_steps}) or epochs ({self.epochs}) "
                f"(--generator-steps N or --epochs N)."
            )
        for name in ("generator_steps", "epochs", "eval_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")
        object.__setattr__(self, "metrics", tuple(self.metrics))
        unknown = [name for name in self.metrics if name not in ("fid", "shapes")]
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be a non-empty subset of ('fid', 'shapes'), got {self.metrics!r}.")
        if self.direction not in (None, "minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize', 'maximize' or None, got {self.direction!r}.")
        if self.num_samples < 2 or (self.num_real is not None and self.num_real < 2):
            raise ValueError(
                f"num_samples and num_real need at least 2 images, got {self.num_samples}, {self.num_real}."
            )
        if self.inception_score and self.num_samples < self.is_splits:
            raise ValueError(f"num_samples={self.num_samples} is below is_splits={self.is_splits}; lower is_splits.")

    @property
    def resolved_direction(self) -> str:
        """The study's direction: the given one, else ``minimize`` for distances (FID, FSD, KID, TV) and
        ``maximize`` for scores (IS, coverage, validity, precision...).

        Example:
            >>> SweepSettings(generator_steps=1, objective="fsd").resolved_direction
            'minimize'
            >>> SweepSettings(generator_steps=1, objective="validity").resolved_direction
            'maximize'
        """
        if self.direction is not None:
            return self.direction
        name = self.objective.lower()
        return "minimize" if any(token in name for token in _LOWER_IS_BETTER) else "maximize"

    @property
    def resolved_kid_subset_size(self) -> int:
        """The KID subset size in use: the given one, else the standard 1000 capped by the sample counts."""
        if self.kid_subset_size is not None:
            return self.kid_subset_size
        return min(1000, self.num_samples, self.num_real or self.num_samples)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (stored in the study, so every worker and trial process uses the same settings)."""
        data = asdict(self)
        data["metrics"] = list(self.metrics)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSettings:
        """Inverse of :meth:`to_dict` (unknown keys are an error: a newer sweep wrote them)."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Sweep settings have unknown fields {unknown}: the study was made by a newer version.")
        return cls(**{**data, "metrics": tuple(data.get("metrics", ("fid",)))})
