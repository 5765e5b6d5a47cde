"""One interface over the standard Inception, the other registered extractors and user-supplied modules.

:class:`FeatureExtractor` takes uint8 images, replicates grayscale to RGB, runs the network once and returns both
feature sets the metrics need (features for FID/KID/PRDC, logits for IS). It also names itself for the protocol
record and the real-statistics cache, and reports the numerics it runs with (BN folding, dtype, TF32 / matmul
precision, device type), which change the features in the last digits and so belong in the protocol. It knows
nothing about metrics, data or caching; named extractors are looked up in ``extractors.py``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gen.metrics.inception import (
    INCEPTION_NAME,
    OFFICIAL_WEIGHTS_SHA256,
    build_inception,
    file_sha256,
    resolve_inception_weights,
)

__all__ = ["FeatureExtractor", "Features", "STANDARD_RESIZE"]

#: How the standard extractor brings images to its input size, as recorded in the protocol.
STANDARD_RESIZE = "tf1-bilinear-299 (torch-fidelity interpolate_bilinear_2d_like_tensorflow1x, no antialias)"
# Output sizes of the FID Inception: pool3 features and the 1008-way classifier of the 2015 graph.
_INCEPTION_DIMS = (2048, 1008)


@dataclass
class Features:
    """Features of one batch of images."""

    pool: Tensor  # (N, d) float32, what FID, KID and PRDC compare (Inception: the 2048-d pool3 features)
    logits: Tensor  # (N, k) float32, what IS turns into class probabilities (Inception: 1008 bias-free logits)


class FeatureExtractor(nn.Module):
    """Maps uint8 images (N, C, H, W), C in {1, 3}, to :class:`Features`, under ``torch.inference_mode``.

    Build it with :meth:`inception` (the standard), by name with
    :func:`~lightning_gen.metrics.extractors.build_extractor` (``"dinov2-vit-l-14"``, ...), or with :meth:`custom`
    (any module; numbers are then *not* comparable with published ones, and the protocol says so).

    Args:
        network: Maps uint8 images (N, 3, H, W) to features (N, d), or to ``(features, logits)`` when
            ``with_logits`` is true.
        name: Extractor name recorded in the protocol, e.g. ``"inception-v3-compat"`` or ``"custom:MyNet"``.
        fingerprint: Full sha256 of the weights (file for named extractors, state dict for custom modules); keys
            the cache.
        standard: True only for official weights (full-hash equality): comparable with papers.
        resize: How inputs are resized, as recorded in the protocol.
        with_logits: The network returns ``(features, logits)``; otherwise its one output serves both.
        numerics: Fixed facts about how the network computes (e.g. ``{"bn_folding": True, "dtype": "float32"}``);
            the device type, matmul precision and TF32 switches are added when :meth:`numerics` is read.
        dims: ``(feature dim, logit dim)`` when known; otherwise read from ``network.num_features`` or probed.

    Attributes:
        is_inception: The network is the FID Inception architecture, whatever its weights.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        name: str,
        fingerprint: str,
        standard: bool,
        resize: str,
        with_logits: bool = False,
        numerics: dict[str, Any] | None = None,
        dims: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.name = name
        self.fingerprint = fingerprint
        self.standard = standard
        self.is_inception = name == INCEPTION_NAME
        self.resize = resize
        self.with_logits = with_logits
        self._numerics = dict(numerics or {})
        self._dims = dims

    @classmethod
    def inception(cls, weights: str | os.PathLike | None = None, *, download: bool = True) -> FeatureExtractor:
        """The standard FID Inception-v3 (torch-fidelity port of the 2015-12-05 TF graph).

        Args:
            weights: Weights file; ``None`` resolves it as in
                :func:`~lightning_gen.metrics.inception.resolve_inception_weights`.
            download: Whether a missing file may be downloaded.

        Raises:
            MissingInceptionWeightsError: The weights are missing (the message says where to get and put them).
        """
        path = resolve_inception_weights(weights, download=download)
        network = build_inception(path)
        # Two inference-only rewrites, each the same function up to float32 rounding (the agreement tests compare
        # with torch-fidelity's unmodified network): batch norm folded into the preceding convolution (a fifth of
        # the CPU time went to separate batch-norm passes), and channels_last, which lets oneDNN/cuDNN pick faster
        # convolution kernels (about 1.6x on CPU here). Both are recorded in the protocol's numerics.
        _fold_batch_norms(network)
        network = network.to(memory_format=torch.channels_last)
        sha256 = file_sha256(path)
        return cls(
            network,
            name=INCEPTION_NAME,
            fingerprint=sha256,
            # Only the official file gives comparable numbers; anything else (e.g. a randomly initialised stand-in
            # used offline) is recorded as non-standard. The full hash decides, not the 8 digits in the file name.
            standard=sha256 == OFFICIAL_WEIGHTS_SHA256,
            resize=STANDARD_RESIZE,
            with_logits=True,
            numerics={"bn_folding": True, "dtype": "float32", "memory_format": "channels_last"},
            dims=_INCEPTION_DIMS,
        )

    @classmethod
    def custom(cls, module: nn.Module) -> FeatureExtractor:
        """Wrap any module mapping uint8 images (N, 3, H, W) to features (N, d). Non-standard.

        The same output serves FID/KID/PRDC (as features) and IS (as class logits). The module is put in eval
        mode; its cache identity is its class name, ``repr`` and the sha256 of its state dict.

        Args:
            module: The feature network.

        Raises:
            TypeError: ``module`` is not an ``nn.Module``.
        """
        if isinstance(module, FeatureExtractor):
            return module
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"feature_extractor must be a torch.nn.Module mapping uint8 images (N, 3, H, W) to (N, d) features, "
                f"or a registered extractor name, got {type(module).__name__}."
            )
        module.eval().requires_grad_(False)
        parameter = next(module.parameters(), None)
        return cls(
            module,
            name=f"custom:{type(module).__qualname__}",
            fingerprint=module_fingerprint(module),
            standard=False,
            resize="defined by the custom extractor",
            numerics={"dtype": str(parameter.dtype).removeprefix("torch.") if parameter is not None else None},
        )

    @property
    def dims(self) -> tuple[int, int]:
        """``(feature dim, logit dim)``; asks the network with one dummy image when it declares neither."""
        if self._dims is None:
            num_features = getattr(self.network, "num_features", None)
            if isinstance(num_features, int) and not self.with_logits:
                self._dims = (num_features, num_features)
            else:
                # Same convention as torchmetrics: without a `num_features` attribute, ask the module.
                probe = torch.zeros(1, 3, 299, 299, dtype=torch.uint8, device=self.device)
                features = self(probe)
                self._dims = (features.pool.shape[1], features.logits.shape[1])
        return self._dims

    @property
    def device(self) -> torch.device:
        """Where the network's parameters (or buffers) live; CPU for a parameter-free network."""
        tensor = next(self.network.parameters(), None)
        if tensor is None:
            tensor = next(self.network.buffers(), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def numerics(self) -> dict[str, Any]:
        """How the features are computed right now, for the protocol: the fixed facts given at construction plus
        the device type and the float32 matmul / convolution precision switches in force (TF32 changes features
        in the third or fourth significant digit on Ampere and later GPUs)."""
        device = self.device
        record = dict(self._numerics)
        record["device_type"] = device.type
        record["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        if device.type == "cuda":
            record["cuda_matmul_allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
            record["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
        return record

    def forward(self, images: Tensor) -> Features:
        """Extract features.

        Args:
            images: uint8 tensor (N, C, H, W) with C = 1 (replicated to RGB, as PIL's ``convert("RGB")`` does) or 3.

        Returns:
            Float32 features, safe to use outside inference mode.
        """
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images)
            raise TypeError(
                f"Feature extraction expects uint8 images (N, C, H, W) in [0, 255], got {got}. Quantize float "
                f"images in [-1, 1] first with ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)."
            )
        channels = images.shape[1]
        if channels == 1:
            images = images.expand(-1, 3, -1, -1)
        elif channels != 3:
            raise ValueError(
                f"Images must have 1 (grayscale) or 3 (RGB) channels, got {channels}; drop the alpha channel or "
                f"convert the images to RGB first."
            )
        with torch.inference_mode():
            out = self.network(images)
        if self.with_logits:
            pool, logits = out
        else:
            if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != images.shape[0]:
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(
                    f"Feature extractor {self.name} must return a (N, d) tensor for N={images.shape[0]} "
                    f"images, got {shape}."
                )
            pool = logits = out
        # Inference tensors cannot take part in in-place updates or collectives outside inference mode; the
        # metric states do both, so hand out ordinary tensors.
        return Features(pool=pool.float().clone(), logits=logits.float().clone())


@torch.no_grad()
def _fold_batch_norms(network: nn.Module) -> None:
    """Fold each eval-mode ``bn(conv(x))`` pair of torch-fidelity's ``BasicConv2d`` blocks into the convolution."""
    for block in network.modules():
        conv, norm = getattr(block, "conv", None), getattr(block, "bn", None)
        if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
            continue
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(shift, requires_grad=False)
        block.bn = nn.Identity()


def module_fingerprint(module: nn.Module) -> str:
    """sha256 of a module's class name, ``repr`` and state dict (names, shapes, dtypes and bytes).

    Example:
        >>> from torch import nn
        >>> len(module_fingerprint(nn.Linear(2, 2)))
        64
    """
    digest = hashlib.sha256()
    digest.update(type(module).__qualname__.encode())
    digest.update(repr(module).encode())
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
