"""FID, Inception Score, KID, precision/recall and density/coverage for generative models, with a full protocol.

With the standard extractor the numbers agree with torch-fidelity (the FID Inception-v3 port of the 2015-12-05
TensorFlow graph, TF-compatible bilinear resize to 299 without antialiasing, uint8 rounding, float64 statistics, 10
IS splits, KID subsets as in torch-fidelity, precision/recall as its ``prc``), so they compare with published ones.
Each value comes with its :class:`~lightning_gen.metrics.protocol.Protocol`: extractor and full weights sha256, the
extractor's numerics, how the real images were decoded and resized, sample counts and seeds.

- During training: :class:`FIDCallback` (optionally with KID, IS and precision/recall/density/coverage),
  :class:`InceptionScoreCallback`, :class:`KIDCallback`.
- Standalone: :func:`evaluate` or ``lightning-gen fid REAL FAKE``; :func:`compute_statistics` /
  ``lightning-gen fid-stats`` for portable ``.npz`` statistics files.
- Synthetic training data: :func:`classification_accuracy_score` (CAS), :func:`augmentation_gain`,
  :func:`intra_class_frechet_distance`, :class:`CASCallback`, ``lightning-gen synthetic``.
- Other feature spaces by name (``feature_extractor="dinov2-vit-l-14"``): see :mod:`~lightning_gen.metrics.extractors`.

Weights are looked up in the ``weights`` argument, then an environment variable
(``$LIGHTNING_GEN_INCEPTION_WEIGHTS``, ``$LIGHTNING_GEN_DINOV2_WEIGHTS``), then the torch hub cache, and downloaded
when online. Real statistics are cached in ``$LIGHTNING_GEN_CACHE/metrics`` (default ``~/.cache/lightning_gen/metrics``).
"""

from lightning_gen.metrics.cache import RealStatisticsCache, default_cache_dir, folder_fingerprint
from lightning_gen.metrics.callbacks import (
    FIDCallback,
    GenerativeMetricsCallback,
    InceptionScoreCallback,
    KIDCallback,
)
from lightning_gen.metrics.digits import DigitsEvaluator, DigitsMetricResult, evaluate_digits
from lightning_gen.metrics.digits_callback import DigitsMetricsCallback
from lightning_gen.metrics.digits_classifier import (
    DIGITS_CLASSIFIER_SHA256,
    DIGITS_CLASSIFIER_WEIGHTS,
    load_digits_classifier,
)
from lightning_gen.metrics.evaluate import compute_statistics, evaluate
from lightning_gen.metrics.evaluator import MetricEvaluator
from lightning_gen.metrics.extractors import available_extractors, build_extractor, register_extractor
from lightning_gen.metrics.features import FeatureExtractor, Features
from lightning_gen.metrics.inception import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_FILENAME,
    INCEPTION_WEIGHTS_URL,
    MissingInceptionWeightsError,
    resolve_inception_weights,
)
from lightning_gen.metrics.prdc import PrecisionRecallDensityCoverage, prdc_from_features
from lightning_gen.metrics.protocol import MetricResult, Protocol
from lightning_gen.metrics.shapes import ShapesEvaluator, ShapesMetricResult, evaluate_shapes
from lightning_gen.metrics.shapes_callback import ShapesMetricsCallback
from lightning_gen.metrics.shapes_classifier import (
    SHAPES_CLASSIFIER_SHA256,
    SHAPES_CLASSIFIER_WEIGHTS,
    load_shapes_classifier,
)
from lightning_gen.metrics.sources import real_subset_indices
from lightning_gen.metrics.statistics import (
    StandardFID,
    StandardInceptionScore,
    StandardKID,
    frechet_distance,
)
from lightning_gen.metrics.statistics_file import FIDStatistics, load_statistics, save_statistics
from lightning_gen.metrics.synthetic import (
    AugmentationGainResult,
    CASResult,
    augmentation_gain,
    classification_accuracy_score,
)
from lightning_gen.metrics.synthetic_callback import CASCallback
from lightning_gen.metrics.synthetic_classifier import ClassifierProtocol, SmallCNN
from lightning_gen.metrics.synthetic_intra_fd import IntraClassFDResult, intra_class_frechet_distance
from lightning_gen.metrics.synthetic_sources import LabelledImages, labelled_images, stratified_subset_indices

__all__ = [
    "AugmentationGainResult",
    "CASCallback",
    "CASResult",
    "ClassifierProtocol",
    "DIGITS_CLASSIFIER_SHA256",
    "DIGITS_CLASSIFIER_WEIGHTS",
    "DigitsEvaluator",
    "DigitsMetricResult",
    "DigitsMetricsCallback",
    "FIDCallback",
    "FIDStatistics",
    "FeatureExtractor",
    "Features",
    "GenerativeMetricsCallback",
    "INCEPTION_WEIGHTS_ENV",
    "INCEPTION_WEIGHTS_FILENAME",
    "INCEPTION_WEIGHTS_URL",
    "InceptionScoreCallback",
    "IntraClassFDResult",
    "KIDCallback",
    "LabelledImages",
    "MetricEvaluator",
    "MetricResult",
    "MissingInceptionWeightsError",
    "PrecisionRecallDensityCoverage",
    "Protocol",
    "RealStatisticsCache",
    "SHAPES_CLASSIFIER_SHA256",
    "SHAPES_CLASSIFIER_WEIGHTS",
    "ShapesEvaluator",
    "ShapesMetricResult",
    "ShapesMetricsCallback",
    "SmallCNN",
    "StandardFID",
    "StandardInceptionScore",
    "StandardKID",
    "augmentation_gain",
    "available_extractors",
    "build_extractor",
    "classification_accuracy_score",
    "compute_statistics",
    "default_cache_dir",
    "evaluate",
    "evaluate_digits",
    "evaluate_shapes",
    "folder_fingerprint",
    "frechet_distance",
    "intra_class_frechet_distance",
    "labelled_images",
    "load_digits_classifier",
    "load_shapes_classifier",
    "load_statistics",
    "prdc_from_features",
    "real_subset_indices",
    "register_extractor",
    "resolve_inception_weights",
    "save_statistics",
    "stratified_subset_indices",
]
