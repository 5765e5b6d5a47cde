"""The digits classifier: the network behind digits FD, class coverage and conditional accuracy, its preprocessing
and its weights.

:class:`DigitsClassifier` is a plain ``nn.Module`` (no Lightning) reading a 28x28 grayscale digit;
``tools/train_digits_classifier.py`` trains it deterministically on the **training split** of the built-in MNIST
digits (:class:`~lightning_gen.data.DigitsDataset`, 4,000 digits; the 1,000 test digits are never trained on) and
the result ships in ``weights/digits_classifier.safetensors`` (float16, pinned by :data:`DIGITS_CLASSIFIER_SHA256`).
:func:`prepare_digits_images` is the protocol's preprocessing; it undoes what the data module does to reach a size
(see :data:`DIGITS_RESIZE`), so real digits read the same at every size it offers. Turning predictions into metrics
is ``digits.py``.

Held-out accuracy of the shipped weights on the 1,000 test digits: 0.995 at 28, 32, 24, 48 and 64 px, 0.992 at
16 px (:data:`DIGITS_CLASSIFIER_ACCURACY`; ``benchmarks/RESULTS.md``, "Digits evaluator"). Known weakness: an
all-black image is read confidently as one digit (blank images were not among the outliers it was trained to be
unsure of); conditional accuracy and class TV still expose a generator that draws blanks.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gen._files import sha256_file
from lightning_gen.data.digits import DIGIT_CLASSES

__all__ = [
    "DIGITS_CLASSIFIER_ACCURACY",
    "DIGITS_CLASSIFIER_NAME",
    "DIGITS_CLASSIFIER_SHA256",
    "DIGITS_CLASSIFIER_WEIGHTS",
    "DIGITS_INPUT_SIZE",
    "DIGITS_RESIZE",
    "DIGITS_VALIDITY_THRESHOLD",
    "DigitsClassifier",
    "DigitsFeatureNetwork",
    "digits_feature_network",
    "load_digits_classifier",
    "prepare_digits_images",
]

#: Side of the classifier's input (MNIST's own).
DIGITS_INPUT_SIZE = 28
#: The side the data module pads MNIST to before any other resize (see :func:`~lightning_gen.data.prepare_digits`).
_PADDED_SIZE = 32
#: How images reach the classifier, as recorded in the protocol.
DIGITS_RESIZE = (
    "RGB->grey (channel mean); 28 px as is; any other size: float bilinear antialiased resize to 32 (none at 32), "
    "then the central 28x28 (the data's 2-px padding removed); [0,255]->[-1,1]"
)
#: Softmax probability of one class an image needs to count as a valid digit. Trained with label smoothing, the
#: classifier rarely exceeds 0.95 even on clean digits; at 0.7, 96% of the real test digits are valid at 28-64 px
#: (92% at 16 px) and at most 2% of noise or two overlaid digits (``benchmarks/RESULTS.md``).
DIGITS_VALIDITY_THRESHOLD = 0.7
#: The name recorded in the protocol (bump the version with new weights).
DIGITS_CLASSIFIER_NAME = "digits-classifier-v1"
#: The shipped weights and their pinned sha256.
DIGITS_CLASSIFIER_WEIGHTS = Path(__file__).parent / "weights" / "digits_classifier.safetensors"
DIGITS_CLASSIFIER_SHA256 = "09b31dfca05896abbbce13994b30857ec844ea01b12e9c52789a3d56828201a1"
#: Accuracy of the shipped weights on the 1,000 built-in test digits, per image size (printed by the training tool).
DIGITS_CLASSIFIER_ACCURACY: dict[int, float] = {28: 0.995, 32: 0.995, 16: 0.992, 24: 0.995, 48: 0.995, 64: 0.995}


class DigitsClassifier(nn.Module):
    """Small CNN reading a 28x28 grayscale digit in [-1, 1]: penultimate features and 10 logits.

    A 3x3 convolution at 28 px, two at 14 px and one at 7 px (batch norm, ReLU, max pooling between the sizes), a
    128-d penultimate layer on the flattened 7x7 maps (the digits-FD features) and a linear head.

    Args:
        widths: Channels at 28, 14 and 7 px.
        feature_dim: Size of the penultimate layer.
        num_classes: Number of logits.

    Example:
        >>> net = DigitsClassifier()
        >>> features, logits = net(torch.zeros(2, 1, 28, 28))
        >>> features.shape, logits.shape
        (torch.Size([2, 128]), torch.Size([2, 10]))
    """

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), feature_dim: int = 128, num_classes: int = 10) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        a, b, c = widths
        # Cheap on purpose (about 4M multiply-adds per digit): the tool trains it in minutes on two CPU cores.
        self.body = nn.Sequential(
            *conv(1, a), nn.MaxPool2d(2),
            *conv(a, b), *conv(b, b), nn.MaxPool2d(2),
            *conv(b, c), nn.Flatten(),
        )  # fmt: skip
        side = DIGITS_INPUT_SIZE // 4
        self.features = nn.Sequential(nn.Linear(c * side * side, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)
        self.num_features = feature_dim

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Penultimate features (N, feature_dim) and logits (N, num_classes) for float images (N, 1, 28, 28)."""
        features = self.features(self.body(images))
        return features, self.head(features)


def prepare_digits_images(images: Tensor) -> Tensor:
    """The protocol's preprocessing: uint8 (N, C, H, W), C in {1, 3}, any square size -> float (N, 1, 28, 28) in
    [-1, 1] (see :data:`DIGITS_RESIZE`).

    The data module makes 32 px digits by padding MNIST's 28 px with 2 black pixels a side, and every other size
    (16, 64, ...) by resizing the 32 px ones; this goes back the same way, so a real digit reaches the classifier
    as MNIST drew it (exactly at 28 and 32 px, resampled twice at other sizes).

    Example:
        >>> from lightning_gen.data.digits import load_digits, prepare_digits
        >>> digits, _ = load_digits("test")
        >>> padded = prepare_digits(digits[:4], image_size=32, channels=3)
        >>> torch.equal(prepare_digits_images(padded), prepare_digits_images(digits[:4, None]))
        True
        >>> prepare_digits_images(prepare_digits(digits[:4], image_size=16)).shape
        torch.Size([4, 1, 28, 28])
    """
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images)
        raise TypeError(
            f"The digits classifier expects uint8 images (N, C, H, W) in [0, 255], got {got}. Quantize float images "
            f"in [-1, 1] first with ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)."
        )
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"Images must have 1 (grayscale) or 3 (RGB) channels, got {images.shape[1]}; drop the alpha channel first."
        )
    images = images.float().mean(dim=1, keepdim=True)
    if images.shape[-2:] != (DIGITS_INPUT_SIZE, DIGITS_INPUT_SIZE):
        if images.shape[-2:] != (_PADDED_SIZE, _PADDED_SIZE):
            images = F.interpolate(images, size=(_PADDED_SIZE, _PADDED_SIZE), mode="bilinear", antialias=True, align_corners=False)
        margin = (_PADDED_SIZE - DIGITS_INPUT_SIZE) // 2
        images = images[:, :, margin : margin + DIGITS_INPUT_SIZE, margin : margin + DIGITS_INPUT_SIZE]
    return images / 127.5 - 1.0


def load_digits_classifier(
    path: str | os.PathLike | None = None, *, expected_sha256: str | None = DIGITS_CLASSIFIER_SHA256
) -> DigitsClassifier:
    """The trained classifier, in eval mode and float32, from the shipped (sha256-verified) weights.

    Args:
        path: Weights file; default the one shipped with the package.
        expected_sha256: The file's required sha256 (default: the shipped file's pin); ``None`` skips the check,
            e.g. for weights you trained yourself with ``tools/train_digits_classifier.py``.

    Raises:
        FileNotFoundError: The file is missing.
        ValueError: Its sha256 differs from ``expected_sha256``.
    """
    from lightning_gen.metrics.classifier_evaluation import load_pinned_classifier

    path = path if path is not None else DIGITS_CLASSIFIER_WEIGHTS
    return load_pinned_classifier(DigitsClassifier(), path, expected_sha256, "Digits classifier", "tools/train_digits_classifier.py")


class DigitsFeatureNetwork(nn.Module):
    """The classifier as a feature network: uint8 images (N, C, H, W) -> penultimate features (N, 128).

    This is the form FID-style machinery takes (``num_features`` says the size); :meth:`predict` also returns the
    logits.

    Args:
        classifier: The classifier; default the shipped one (:func:`load_digits_classifier`).
        weights_sha256: sha256 of the weights file behind ``classifier``, for the protocol; default the pin.
    """

    class_names = DIGIT_CLASSES

    def __init__(self, classifier: DigitsClassifier | None = None, weights_sha256: str | None = None) -> None:
        super().__init__()
        self.classifier = classifier if classifier is not None else load_digits_classifier()
        self.weights_sha256 = weights_sha256 if weights_sha256 is not None else DIGITS_CLASSIFIER_SHA256
        self.num_features = self.classifier.num_features

    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Features (N, 128) and logits (N, 10) (float32, usable outside inference mode)."""
        inputs = prepare_digits_images(images)
        with torch.inference_mode():
            features, logits = self.classifier(inputs)
        return features.clone(), logits.clone()

    def forward(self, images: Tensor) -> Tensor:
        return self.predict(images)[0]


def digits_feature_network(
    weights: str | os.PathLike | None = None, *, expected_sha256: str | None = DIGITS_CLASSIFIER_SHA256
) -> DigitsFeatureNetwork:
    """The shipped classifier (or ``weights``) as a :class:`DigitsFeatureNetwork`, with its file's sha256 recorded.

    Args:
        weights: Weights file; default the shipped one.
        expected_sha256: Required sha256 of the file; ``None`` skips the check (your own weights).
    """
    path = Path(weights) if weights is not None else DIGITS_CLASSIFIER_WEIGHTS
    classifier = load_digits_classifier(path, expected_sha256=expected_sha256)
    return DigitsFeatureNetwork(classifier, weights_sha256=sha256_file(path))
