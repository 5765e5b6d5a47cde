"""Find, hash and load the FID Inception-v3 weights: the torch-fidelity port of the 2015-12-05 TensorFlow graph.

This module is only about the *standard* feature extractor: where its weights file comes from (argument,
environment variable, torch hub cache, download), its sha256 for the protocol record, and building
torch-fidelity's ``FeatureExtractorInceptionV3`` from it. Turning images into statistics and numbers lives in
``features.py`` and ``statistics.py``; custom extractors never come through here.

Example:
    >>> from lightning_gen.metrics.inception import INCEPTION_WEIGHTS_FILENAME
    >>> INCEPTION_WEIGHTS_FILENAME
    'weights-inception-2015-12-05-6726825d.pth'
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from lightning_gen._files import sha256_file

__all__ = [
    "INCEPTION_WEIGHTS_ENV",
    "INCEPTION_WEIGHTS_FILENAME",
    "INCEPTION_WEIGHTS_URL",
    "MissingInceptionWeightsError",
    "MissingWeightsError",
    "OFFICIAL_WEIGHTS_SHA256",
    "build_inception",
    "file_sha256",
    "hub_weights_path",
    "resolve_inception_weights",
]

#: Where torch-fidelity (and torchmetrics) download the weights from; taken from torch-fidelity itself so the two
#: never disagree about which file is "the" FID Inception.
INCEPTION_WEIGHTS_URL: str = URL_INCEPTION_V3
#: The file name torch.hub gives the download in ``<torch hub dir>/checkpoints/``.
INCEPTION_WEIGHTS_FILENAME: str = INCEPTION_WEIGHTS_URL.rsplit("/", 1)[-1]
#: Environment variable naming a local copy of the weights (the second place looked at).
INCEPTION_WEIGHTS_ENV: str = "LIGHTNING_GEN_INCEPTION_WEIGHTS"
#: Full sha256 of the official file (95,628,359 bytes; the same bytes pytorch-fid releases as
#: ``pt_inception-2015-12-05-6726825d.pth``). Only a file with exactly this hash gives numbers comparable with papers;
#: torch.hub's file-name convention guarantees only the first 8 hex digits, which a different file can share.
OFFICIAL_WEIGHTS_SHA256: str = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
# Kept for callers written against the prefix rule; deciding "official" needs the full hash above.
OFFICIAL_WEIGHTS_SHA256_PREFIX: str = OFFICIAL_WEIGHTS_SHA256[:8]

# The extractor name torch-fidelity registers this network under; recorded in every protocol.
INCEPTION_NAME = "inception-v3-compat"
# Pool features for FID/KID and bias-free logits for IS, the layers the original TF metrics read.
INCEPTION_FEATURES = ("2048", "logits_unbiased")


class MissingWeightsError(FileNotFoundError):
    """A feature extractor's weights are not on disk and could not be downloaded."""


class MissingInceptionWeightsError(MissingWeightsError):
    """The FID Inception weights are not on disk and could not be downloaded."""


def hub_weights_path() -> Path:
    """Path where ``torch.hub`` (and therefore torch-fidelity) caches the downloaded weights.

    Returns:
        ``<torch.hub.get_dir()>/checkpoints/weights-inception-2015-12-05-6726825d.pth``; honours ``TORCH_HOME``.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILENAME


def _missing_message(reason: str) -> str:
    return (
        f"{reason}\nThe FID Inception weights file {INCEPTION_WEIGHTS_FILENAME!r} is needed. Download it from\n"
        f"  {INCEPTION_WEIGHTS_URL}\n"
        f"on a machine with internet access and either put it at\n"
        f"  {hub_weights_path()}\n"
        f"(the torch hub cache, shared with torch-fidelity and torchmetrics), set {INCEPTION_WEIGHTS_ENV}=/path/to/file, "
        f"or pass weights=/path/to/file (--weights on the command line)."
    )


def resolve_inception_weights(weights: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Locate the FID Inception weights file, downloading it into the torch hub cache if needed.

    Looks, in order, at ``weights``, the ``LIGHTNING_GEN_INCEPTION_WEIGHTS`` environment variable and the torch hub
    cache (:func:`hub_weights_path`); when none has the file and ``download`` is true, downloads it there.

    Args:
        weights: Explicit path to the weights file. When given it must exist: a wrong path is an error, not a
            reason to fall back to the next place.
        download: Whether a missing file may be downloaded. Offline machines fail fast with ``False``.

    Returns:
        Path of an existing weights file.

    Raises:
        MissingInceptionWeightsError: No file found and it could not (or may not) be downloaded. The message names
            the file, its URL and where to put it.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingInceptionWeightsError(_missing_message(f"weights={str(weights)!r} is not a file."))
        return path
    from_env = os.environ.get(INCEPTION_WEIGHTS_ENV)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise MissingInceptionWeightsError(
                _missing_message(f"{INCEPTION_WEIGHTS_ENV}={from_env!r} does not point to a file.")
            )
        return path
    cached = hub_weights_path()
    if cached.is_file():
        return cached
    if not download:
        raise MissingInceptionWeightsError(_missing_message(f"Not found at {cached} and download=False."))
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        # download_url_to_file writes to a temporary file and renames it, so an interrupted download never leaves
        # a truncated file where the next run would find it.
        torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(cached), progress=True)
    except (urllib.error.URLError, OSError) as error:
        raise MissingInceptionWeightsError(
            _missing_message(f"Not found at {cached} and the download failed ({error}).")
        ) from error
    return cached


_SHA256_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, memoised per (path, size, mtime) because hashing ~100 MB costs a noticeable pause.

    Args:
        path: File to hash.

    Returns:
        The 64-character hex digest.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256_MEMO:
        _SHA256_MEMO[key] = sha256_file(path)
    return _SHA256_MEMO[key]


def build_inception(weights_path: str | os.PathLike) -> nn.Module:
    """Build torch-fidelity's ``FeatureExtractorInceptionV3`` from a weights file.

    The network takes uint8 images (N, 3, H, W) of any size, resizes them to 299 x 299 with torch-fidelity's
    TensorFlow-1-compatible bilinear interpolation (no antialiasing: that is what the 2015 TF graph did and what
    published FIDs are based on), and returns ``(pool_2048, logits_unbiased)`` as float32.

    Args:
        weights_path: A state dict saved with ``torch.save`` (the torch-fidelity release file or a compatible one).

    Returns:
        The network in eval mode without gradients.

    Raises:
        ValueError: The file is not a state dict of this architecture.
    """
    weights_path = Path(weights_path)
    # torch-fidelity loads the file with weights_only=False (full unpickling). Loading it once with
    # weights_only=True first means a file that smuggles arbitrary objects is rejected before that happens, and
    # a wrong file gets an error that says which one.
    try:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for corrupt or unsafe files
        raise ValueError(
            f"Could not read {weights_path} as a PyTorch state dict ({error}). Expected the FID Inception weights "
            f"{INCEPTION_WEIGHTS_FILENAME!r} from {INCEPTION_WEIGHTS_URL}; re-download it if it is truncated."
        ) from error
    if not isinstance(state_dict, dict) or "Mixed_7c.branch_pool.conv.weight" not in state_dict:
        raise ValueError(
            f"{weights_path} is not an Inception-v3 state dict in torch-fidelity's layout (no "
            f"'Mixed_7c.branch_pool.conv.weight'). Expected {INCEPTION_WEIGHTS_FILENAME!r} from {INCEPTION_WEIGHTS_URL}."
        )
    del state_dict
    # torch-fidelity's module, not torchmetrics' NoTrainInceptionV3 wrapper of it: torchmetrics >= 1.8 defaults to
    # antialias=True there (torch's antialiased bilinear resize), which is not the TF1 resize that published FIDs
    # were computed with and shifts FID noticeably at low resolutions.
    return FeatureExtractorInceptionV3(
        INCEPTION_NAME, list(INCEPTION_FEATURES), feature_extractor_weights_path=str(weights_path)
    )
