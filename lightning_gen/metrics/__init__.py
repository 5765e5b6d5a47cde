"""FID, Inception Score and KID for generative models, computed with the standard protocol.

Numbers agree with torch-fidelity (the FID Inception-v3 port of the 2015-12-05 TensorFlow graph, TF-compatible
bilinear resize to 299 without antialiasing, uint8 rounding, float64 statistics, 10 IS splits, KID subsets as in
torch-fidelity), so they compare with published ones. Each value comes with its
:class:`~lightning_gen.metrics.protocol.Protocol`.

- During training: :class:`FIDCallback` (optionally with KID and IS), :class:`InceptionScoreCallback`,
  :class:`KIDCallback`.
- Standalone: :func:`evaluate` or ``lightning-gen fid REAL FAKE``.

Weights are looked up in the ``weights`` argument, then ``$LIGHTNING_GEN_INCEPTION_WEIGHTS``, then the torch hub
cache, and downloaded when online. Real statistics are cached in ``$LIGHTNING_GEN_CACHE/metrics`` (default
``~/.cache/lightning_gen/metrics``).
"""

from lightning_gen.metrics.cache import RealStatisticsCache, default_cache_dir, folder_fingerprint
from lightning_gen.metrics.callbacks import (
    FIDCallback,
    GenerativeMetricsCallback,
    InceptionScoreCallback,
    KIDCallback,
)
from lightning_gen.metrics.evaluate import evaluate
from lightning_gen.metrics.evaluator import MetricEvaluator
from lightning_gen.metrics.features import FeatureExtractor, Features
from lightning_gen.metrics.inception import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_FILENAME,
    INCEPTION_WEIGHTS_URL,
    MissingInceptionWeightsError,
    resolve_inception_weights,
)
from lightning_gen.metrics.protocol import MetricResult, Protocol
from lightning_gen.metrics.statistics import (
    StandardFID,
    StandardInceptionScore,
    StandardKID,
    frechet_distance,
)

__all__ = [
    "FIDCallback",
    "FeatureExtractor",
    "Features",
    "GenerativeMetricsCallback",
    "INCEPTION_WEIGHTS_ENV",
    "INCEPTION_WEIGHTS_FILENAME",
    "INCEPTION_WEIGHTS_URL",
    "InceptionScoreCallback",
    "KIDCallback",
    "MetricEvaluator",
    "MetricResult",
    "MissingInceptionWeightsError",
    "Protocol",
    "RealStatisticsCache",
    "StandardFID",
    "StandardInceptionScore",
    "StandardKID",
    "default_cache_dir",
    "evaluate",
    "folder_fingerprint",
    "frechet_distance",
    "resolve_inception_weights",
]
