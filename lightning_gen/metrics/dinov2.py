"""DINOv2 feature extractors for FD_DINOv2 (Stein et al. 2023): ``"dinov2-vit-s-14"``, ``-b-14``, ``-l-14``.

The network is timm's DINOv2 ViT (``vit_{small,base,large}_patch14_dinov2``), a maintained implementation that is
built without network access and loaded strictly from a weights file. The file is Meta's release checkpoint
(``dinov2_vitl14_pretrain.pth``: what ``torch.hub.load("facebookresearch/dinov2", "dinov2_vitl14")``, and so
torch-fidelity's ``dinov2-vit-l-14``, downloads) or a timm-format copy of it. torch-fidelity's own extractor cannot
load a local file (it raises ``NotImplementedError`` for a weights path and fetches the model code from GitHub),
which is why it is not used directly; its preprocessing is kept exactly:

- uint8 RGB -> float32, TF1-compatible bilinear resize to 224 x 224 (torch-fidelity's
  ``interpolate_bilinear_2d_like_tensorflow1x``, no antialiasing), ImageNet mean/std normalisation;
- the position embeddings of the 518-px release grid (37 x 37) are interpolated to the 16 x 16 grid of a 224-px
  input the way DINOv2's ``interpolate_pos_encoding`` does at every forward (bicubic, scale factor
  ``(16 + 0.1) / 37``, no antialiasing); done once at load time since the input size is fixed;
- the feature is the final-norm CLS token (``x_norm_clstoken``): 384 / 768 / 1024 dimensions.

Weights are looked up like the Inception weights: the ``weights`` argument, ``$LIGHTNING_GEN_DINOV2_WEIGHTS`` (a
file, or a folder holding the release files by name), the torch hub cache
(``<hub>/checkpoints/dinov2_vitl14_pretrain.pth``, shared with torch.hub and torch-fidelity), then a download from
Meta's release URL when allowed. ViT-g/14 (SwiGLU blocks) is not offered.
"""

from __future__ import annotations

import math
import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.inception import MissingWeightsError, file_sha256

__all__ = [
    "DINOV2_MODELS",
    "DINOV2_RESIZE",
    "DINOV2_WEIGHTS_ENV",
    "DinoV2Features",
    "MissingDinoV2WeightsError",
    "build_dinov2",
    "dinov2_feature_extractor",
    "resolve_dinov2_weights",
]

#: Environment variable naming a weights file (or a folder of release files); the second place looked at.
DINOV2_WEIGHTS_ENV = "LIGHTNING_GEN_DINOV2_WEIGHTS"
INPUT_SIZE = 224  # torch-fidelity's and FD_DINOv2's input size
PATCH_SIZE = 14
#: How images reach the network, as recorded in the protocol.
DINOV2_RESIZE = "tf1-bilinear-224 (torch-fidelity interpolate_bilinear_2d_like_tensorflow1x, no antialias), ImageNet mean/std"
# DINOv2 adds this to the patch-grid size when interpolating position embeddings (a historical kludge kept for
# compatibility of its released numbers; see its interpolate_pos_encoding).
_INTERPOLATE_OFFSET = 0.1
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DinoV2Model:
    """One DINOv2 size."""

    timm_name: str  # the timm architecture
    hub_name: str  # torch.hub / release name
    dim: int  # CLS feature size
    official_sha256: str | None  # full sha256 of Meta's release file; None: not pinned here (never "standard")

    @property
    def filename(self) -> str:
        """The release file name, also torch.hub's cache name."""
        return f"{self.hub_name}_pretrain.pth"

    @property
    def url(self) -> str:
        """Meta's release URL."""
        return f"https://dl.fbaipublicfiles.com/dinov2/{self.hub_name}/{self.filename}"


# The release files' hashes could not be checked where this was written (no network), so none is pinned and the
# protocol records standard=False with the file's full sha256: compare FD_DINOv2 values by that hash.
DINOV2_MODELS: dict[str, DinoV2Model] = {
    "dinov2-vit-s-14": DinoV2Model("vit_small_patch14_dinov2", "dinov2_vits14", 384, None),
    "dinov2-vit-b-14": DinoV2Model("vit_base_patch14_dinov2", "dinov2_vitb14", 768, None),
    "dinov2-vit-l-14": DinoV2Model("vit_large_patch14_dinov2", "dinov2_vitl14", 1024, None),
}


class MissingDinoV2WeightsError(MissingWeightsError):
    """The DINOv2 weights are not on disk and could not be downloaded."""


def _model(name: str) -> DinoV2Model:
    if name not in DINOV2_MODELS:
        raise ValueError(f"Unknown DINOv2 extractor {name!r}; choose from {', '.join(DINOV2_MODELS)}.")
    return DINOV2_MODELS[name]


def hub_weights_path(name: str) -> Path:
    """``<torch.hub.get_dir()>/checkpoints/<release file>``: where torch.hub (and torch-fidelity) cache it."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _model(name).filename


def _missing(name: str, reason: str) -> MissingDinoV2WeightsError:
    model = _model(name)
    return MissingDinoV2WeightsError(
        f"{reason}\nThe {name} weights file {model.filename!r} is needed. Download it from\n  {model.url}\non a "
        f"machine with internet access and either put it at\n  {hub_weights_path(name)}\n(the torch hub cache), set "
        f"{DINOV2_WEIGHTS_ENV}=/path/to/file (or to a folder holding it), or pass weights=/path/to/file "
        f"(--weights on the command line)."
    )


def resolve_dinov2_weights(name: str, weights: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Locate the weights of DINOv2 ``name``: argument, environment variable, torch hub cache, download.

    Raises:
        MissingDinoV2WeightsError: Not found and not downloadable; the message says where to get and put it.
    """
    model = _model(name)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise _missing(name, f"weights={str(weights)!r} is not a file.")
        return path
    from_env = os.environ.get(DINOV2_WEIGHTS_ENV)
    if from_env:
        path = Path(from_env).expanduser()
        path = path / model.filename if path.is_dir() else path
        if not path.is_file():
            raise _missing(name, f"{DINOV2_WEIGHTS_ENV}={from_env!r} does not point to {model.filename} or a file.")
        return path
    cached = hub_weights_path(name)
    if cached.is_file():
        return cached
    if not download:
        raise _missing(name, f"Not found at {cached} and download=False.")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(model.url, str(cached), progress=True)
    except (urllib.error.URLError, OSError) as error:
        raise _missing(name, f"Not found at {cached} and the download failed ({error}).") from error
    return cached


def interpolate_position_embeddings(pos_embed: Tensor, grid: int) -> Tensor:
    """Resample (1, 1 + M*M, D) position embeddings to a ``grid`` x ``grid`` patch grid as DINOv2 does.

    Example:
        >>> import torch
        >>> interpolate_position_embeddings(torch.zeros(1, 1 + 37 * 37, 8), 16).shape
        torch.Size([1, 257, 8])
    """
    count = pos_embed.shape[1] - 1
    side = int(math.isqrt(count))
    if side * side != count:
        raise ValueError(f"Position embeddings for {count} patches are not a square grid.")
    if side == grid:
        return pos_embed
    dim = pos_embed.shape[-1]
    patches = pos_embed[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    scale = (grid + _INTERPOLATE_OFFSET) / side
    patches = F.interpolate(patches, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    if patches.shape[-2:] != (grid, grid):
        raise ValueError(f"Interpolating a {side}x{side} grid gave {tuple(patches.shape[-2:])}, expected {grid}x{grid}.")
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([pos_embed[:, :1].float(), patches], dim=1).to(pos_embed.dtype)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise several unrelated types for bad files
        raise ValueError(f"Could not read {path} as DINOv2 weights ({error}).") from error
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or "pos_embed" not in state or "cls_token" not in state:
        raise ValueError(f"{path} is not a DINOv2 ViT state dict (no 'pos_embed' / 'cls_token').")
    return dict(state)


class DinoV2Features(nn.Module):
    """uint8 images (N, 3, H, W) -> DINOv2 CLS features (N, d) in float32, with torch-fidelity's preprocessing."""

    def __init__(self, network: nn.Module, dim: int) -> None:
        super().__init__()
        self.network = network
        self.num_features = dim
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).reshape(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).reshape(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        x = images.float()
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(INPUT_SIZE, INPUT_SIZE), align_corners=False)
        x = (x - self.mean) / self.std
        return self.network(x).float()


def build_dinov2(name: str, weights_path: str | os.PathLike) -> DinoV2Features:
    """Build DINOv2 ``name`` from a release (or timm-format) weights file, in eval mode without gradients.

    Raises:
        ValueError: The file is not a state dict of this architecture (every key and shape must match).
    """
    try:
        import timm
    except ImportError as error:  # an optional dependency: only FD_DINOv2 needs it
        raise ImportError("FD_DINOv2 builds DINOv2 with timm, which is not installed: pip install 'lightning-gen[dinov2]'.") from error

    model = _model(name)
    path = Path(weights_path)
    state = _read_state_dict(path)
    state.pop("mask_token", None)  # used only by DINOv2's masked training objective
    state["pos_embed"] = interpolate_position_embeddings(state["pos_embed"], INPUT_SIZE // PATCH_SIZE)
    network = timm.create_model(model.timm_name, pretrained=False, img_size=INPUT_SIZE, num_classes=0)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not hold {name} weights ({model.filename}): {str(error)[:500]}") from error
    network.eval().requires_grad_(False)
    return DinoV2Features(network, model.dim).eval()


def dinov2_feature_extractor(name: str, weights: str | os.PathLike | None = None, download: bool = True) -> FeatureExtractor:
    """The registered factory behind ``feature_extractor="dinov2-vit-*-14"``."""
    model = _model(name)
    path = resolve_dinov2_weights(name, weights, download=download)
    sha256 = file_sha256(path)
    return FeatureExtractor(
        build_dinov2(name, path),
        name=name,
        fingerprint=sha256,
        standard=model.official_sha256 is not None and sha256 == model.official_sha256,
        resize=DINOV2_RESIZE,
        numerics={"dtype": "float32", "attention": "timm fused scaled_dot_product_attention", "bn_folding": False},
        dims=(model.dim, model.dim),
    )


def _factory(name: str):
    def factory(weights: str | os.PathLike | None, download: bool) -> FeatureExtractor:
        return dinov2_feature_extractor(name, weights, download)

    factory.__name__ = f"dinov2_{name.split('-')[2]}_14"
    return factory


dinov2_vit_s_14 = _factory("dinov2-vit-s-14")
dinov2_vit_b_14 = _factory("dinov2-vit-b-14")
dinov2_vit_l_14 = _factory("dinov2-vit-l-14")
