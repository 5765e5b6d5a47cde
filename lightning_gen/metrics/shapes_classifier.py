"""The shapes classifier: the network behind FSD, factor coverage and validity, its preprocessing and its weights.

:class:`ShapesClassifier` is a plain ``nn.Module`` (no Lightning) predicting every factor of :data:`FACTORS` from a
32x32 RGB image; ``tools/train_shapes_classifier.py`` trains it deterministically on procedurally drawn shapes and
the result ships in ``weights/shapes_classifier.safetensors`` (float16, pinned by :data:`SHAPES_CLASSIFIER_SHA256`).
:func:`prepare_shapes_images` is the protocol's preprocessing. Turning predictions into metrics is ``shapes.py``.

Held-out accuracies of the shipped weights (5,000 images of seed 1001, all five kinds, sizes 16-64 px, a fifth
grayscale): shape 0.995 (0.98 at 16 px, 1.00 at 32 px), colour 1.000 (RGB), x and y third 0.99, size third 0.95,
background 0.95 (0.77 in grayscale). Details in ``benchmarks/RESULTS.md`` ("Shapes evaluator").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gen._files import sha256_file
from lightning_gen._images import to_uint8
from lightning_gen.data.shapes import COLOURS, SHAPE_KINDS

__all__ = [
    "FACTORS",
    "SHAPES_CLASSIFIER_NAME",
    "SHAPES_CLASSIFIER_SHA256",
    "SHAPES_CLASSIFIER_WEIGHTS",
    "SHAPES_INPUT_SIZE",
    "SHAPES_RESIZE",
    "VALIDITY_THRESHOLD",
    "ShapesClassifier",
    "ShapesFeatureNetwork",
    "factor_labels",
    "load_shapes_classifier",
    "prepare_shapes_images",
    "shapes_feature_network",
    "sort_by_predicted_shape",
]

#: What the classifier predicts: factor name -> value names, in output order. ``x``, ``y`` and ``size`` are the
#: thirds of the image side the shape's centre / diameter falls into; ``background`` is what is visible (a
#: gradient between two equal colours looks plain and is labelled so).
FACTORS: dict[str, tuple[str, ...]] = {
    "shape": SHAPE_KINDS,
    "colour": tuple(COLOURS),
    "x": ("left", "centre", "right"),
    "y": ("top", "middle", "bottom"),
    "size": ("small", "medium", "large"),
    "background": ("plain", "gradient"),
}
#: Softmax probability the classifier must give one shape (and, for RGB images, one colour) for an image to count
#: as valid.
VALIDITY_THRESHOLD = 0.9
#: Side of the classifier's input; every image is resized to it.
SHAPES_INPUT_SIZE = 32
#: How images reach the classifier, as recorded in the protocol.
SHAPES_RESIZE = "grayscale->RGB, float bilinear antialiased resize to 32x32 (none at 32), [0,255]->[-1,1]"
#: The name recorded in the protocol (bump the version with new weights).
SHAPES_CLASSIFIER_NAME = "shapes-classifier-v1"
#: The shipped weights and their pinned sha256.
SHAPES_CLASSIFIER_WEIGHTS = Path(__file__).parent / "weights" / "shapes_classifier.safetensors"
SHAPES_CLASSIFIER_SHA256 = "3bf20983e632c78d188063bb1f6adab7c44015db258b3049dc3f957ea13741c7"

# Scale (circumscribed diameter / side) thirds of the data's range, see lightning_gen/data/shapes.py.
_SIZE_EDGES = (0.35 + 0.4 / 3, 0.35 + 0.8 / 3)


def factor_labels(factors: Mapping[str, Any]) -> dict[str, int]:
    """Class index per :data:`FACTORS` entry for one image's factors (``ShapesDataset.factors(i)``).

    Example:
        >>> from lightning_gen.data import ShapesDataset
        >>> labels = factor_labels(ShapesDataset(num_images=1).factors(0))
        >>> sorted(labels) == sorted(FACTORS)
        True
    """

    def third(value: float, edges: tuple[float, float] = (1 / 3, 2 / 3)) -> int:
        return int(value >= edges[0]) + int(value >= edges[1])

    gradient = factors["background"] == "gradient" and factors["background_colour_2"] != factors["background_colour"]
    return {
        "shape": SHAPE_KINDS.index(factors["shape"]),
        "colour": FACTORS["colour"].index(factors["colour"]),
        "x": third(factors["x"]),
        "y": third(factors["y"]),
        "size": third(factors["scale"], _SIZE_EDGES),
        "background": int(gradient),
    }


class ShapesClassifier(nn.Module):
    """Small CNN predicting every factor of :data:`FACTORS` from a 32x32 RGB image in [-1, 1].

    Five 3x3 convolutions with batch norm (the last four with stride 2: 32 -> 2 px, so positions stay readable), a
    128-d penultimate layer (the FSD features) and one linear head per factor.

    Args:
        widths: Channels of the five convolutions.
        feature_dim: Size of the penultimate layer.

    Example:
        >>> net = ShapesClassifier()
        >>> features, logits = net(torch.zeros(2, 3, 32, 32))
        >>> features.shape, logits["shape"].shape, logits["colour"].shape
        (torch.Size([2, 128]), torch.Size([2, 5]), torch.Size([2, 8]))
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64, 64), feature_dim: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for index, width in enumerate(widths):
            # Batch norm makes this plain stack train in a few epochs (without it, shape accuracy crawled to 0.6).
            conv = nn.Conv2d(channels, width, 3, stride=1 if index == 0 else 2, padding=1, bias=False)
            layers += [conv, nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.body = nn.Sequential(*layers, nn.Flatten())
        side = SHAPES_INPUT_SIZE // 2 ** (len(widths) - 1)
        self.features = nn.Sequential(nn.Linear(channels * side * side, feature_dim), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, len(values)) for name, values in FACTORS.items()})
        self.num_features = feature_dim

    def forward(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Penultimate features (N, feature_dim) and logits per factor for float images (N, 3, 32, 32)."""
        features = self.features(self.body(images))
        return features, {name: head(features) for name, head in self.heads.items()}


def prepare_shapes_images(images: Tensor) -> Tensor:
    """The protocol's preprocessing: uint8 (N, C, H, W), C in {1, 3} -> float (N, 3, 32, 32) in [-1, 1].

    Example:
        >>> prepare_shapes_images(torch.zeros(2, 1, 16, 16, dtype=torch.uint8)).shape
        torch.Size([2, 3, 32, 32])
    """
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images)
        raise TypeError(
            f"The shapes classifier expects uint8 images (N, C, H, W) in [0, 255], got {got}. Quantize float images "
            f"in [-1, 1] first with ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)."
        )
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"Images must have 1 (grayscale) or 3 (RGB) channels, got {images.shape[1]}; drop the alpha channel first."
        )
    images = images.expand(-1, 3, -1, -1).float()
    if images.shape[-2:] != (SHAPES_INPUT_SIZE, SHAPES_INPUT_SIZE):
        images = F.interpolate(
            images, size=(SHAPES_INPUT_SIZE, SHAPES_INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False
        )
    return images / 127.5 - 1.0


def load_shapes_classifier(
    path: str | os.PathLike | None = None, *, expected_sha256: str | None = SHAPES_CLASSIFIER_SHA256
) -> ShapesClassifier:
    """The trained classifier, in eval mode and float32, from the shipped (sha256-verified) weights.

    Args:
        path: Weights file; default the one shipped with the package.
        expected_sha256: The file's required sha256 (default: the shipped file's pin); ``None`` skips the check,
            e.g. for weights you trained yourself with ``tools/train_shapes_classifier.py``.

    Raises:
        FileNotFoundError: The file is missing.
        ValueError: Its sha256 differs from ``expected_sha256``.
    """
    from lightning_gen.metrics.classifier_evaluation import load_pinned_classifier

    path = path if path is not None else SHAPES_CLASSIFIER_WEIGHTS
    return load_pinned_classifier(ShapesClassifier(), path, expected_sha256, "Shapes classifier", "tools/train_shapes_classifier.py")


class ShapesFeatureNetwork(nn.Module):
    """The classifier as a feature network: uint8 images (N, C, H, W) -> penultimate features (N, 128).

    This is the form FID-style machinery takes (``num_features`` says the size); :meth:`predict` also returns the
    per-factor logits.

    Args:
        classifier: The classifier; default the shipped one (:func:`load_shapes_classifier`).
        weights_sha256: sha256 of the weights file behind ``classifier``, for the protocol; default the pin.
    """

    def __init__(self, classifier: ShapesClassifier | None = None, weights_sha256: str | None = None) -> None:
        super().__init__()
        self.classifier = classifier if classifier is not None else load_shapes_classifier()
        self.weights_sha256 = weights_sha256 if weights_sha256 is not None else SHAPES_CLASSIFIER_SHA256
        self.num_features = self.classifier.num_features

    def predict(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Features (N, 128) and logits per factor (float32, usable outside inference mode)."""
        inputs = prepare_shapes_images(images)
        with torch.inference_mode():
            features, logits = self.classifier(inputs)
        return features.clone(), {name: value.clone() for name, value in logits.items()}

    def forward(self, images: Tensor) -> Tensor:
        return self.predict(images)[0]


def shapes_feature_network(
    weights: str | os.PathLike | None = None, *, expected_sha256: str | None = SHAPES_CLASSIFIER_SHA256
) -> ShapesFeatureNetwork:
    """The shipped classifier (or ``weights``) as a :class:`ShapesFeatureNetwork`, with its file's sha256 recorded.

    Args:
        weights: Weights file; default the shipped one.
        expected_sha256: Required sha256 of the file; ``None`` skips the check (your own weights).
    """
    path = Path(weights) if weights is not None else SHAPES_CLASSIFIER_WEIGHTS
    classifier = load_shapes_classifier(path, expected_sha256=expected_sha256)
    return ShapesFeatureNetwork(classifier, weights_sha256=sha256_file(path))


def sort_by_predicted_shape(
    images: Tensor, *, network: ShapesFeatureNetwork | None = None, threshold: float = VALIDITY_THRESHOLD
) -> tuple[Tensor, list[str]]:
    """Reorder images by the shape kind the classifier sees, so a sample grid shows coverage at a glance.

    Images are grouped in :data:`~lightning_gen.data.shapes.SHAPE_KINDS` order, most confident first within a
    kind; images whose shape probability is below ``threshold`` come last, labelled ``"?"``.

    Args:
        images: Float (N, C, H, W) in [-1, 1] or uint8, C in {1, 3}.
        network: The classifier; default the shipped one.
        threshold: Shape probability below which an image is labelled ``"?"``.

    Returns:
        The reordered images (same dtype and device) and the label of each, in the new order.

    Example:
        >>> from lightning_gen.data import ShapesDataset
        >>> images, labels = ShapesDataset(num_images=8, shapes=("triangle", "circle")).to_tensors()
        >>> _, kinds = sort_by_predicted_shape(images)
        >>> kinds == sorted(kinds, key=["circle", "square", "triangle", "star", "hexagon", "?"].index)
        True
        >>> sorted(kinds) == sorted(["triangle", "circle"][label] for label in labels)
        True
    """
    network = network if network is not None else shapes_feature_network()
    parameter = next(network.parameters())
    _, logits = network.predict(to_uint8(images).to(parameter.device))
    probabilities = logits["shape"].softmax(dim=1)
    confidence, kind = probabilities.max(dim=1)
    unsure = confidence < threshold
    kind = torch.where(unsure, len(FACTORS["shape"]), kind)
    # Sort by kind, then by falling confidence: a stable sort on confidence first, then on kind.
    order = torch.sort(confidence, descending=True, stable=True).indices
    order = order[torch.sort(kind[order], stable=True).indices]
    names = [*FACTORS["shape"], "?"]
    return images[order.to(images.device)], [names[int(k)] for k in kind[order]]
