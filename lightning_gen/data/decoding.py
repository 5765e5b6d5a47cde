"""Turn one image file into a square uint8 array, whatever its mode.

This module is the single place where lightning-gen decodes image files, so that the
data loaders, the on-disk cache and anything else that reads user images agree pixel
for pixel. It handles the modes Pillow can produce from common formats:

* ``1``, ``L``, ``RGB``: used as they are (``1`` becomes ``L``).
* ``LA``, ``RGBA``, ``PA``, and ``P``/``L``/``RGB`` images with a ``transparency``
  entry: alpha-composited onto a background colour, white by default. White is what
  most transparent images (logos, icons, cut-out products) are drawn to be shown on;
  simply dropping the alpha channel would instead reveal whatever colour the
  invisible pixels happen to store.
* ``P`` without transparency, ``CMYK``, ``YCbCr``, ``HSV``: converted to RGB by Pillow
  (embedded ICC profiles are not applied). ``LAB`` goes through a CIELAB -> sRGB
  transform, since Pillow's plain conversion would just relabel the channels.
* ``I;16`` (16-bit): scaled by ``255 / 65535``. Pillow's own ``convert("L")`` clips
  these at 255, which would make nearly every 16-bit image white.
* ``I`` (32-bit signed integer): values that fit in ``0..65535`` are read as 16-bit
  samples (that is how Pillow stores 16-bit PGM/PPM data); other ranges have no
  standard white level, so the image's own min..max is stretched to ``0..255``.
* ``F`` (32-bit float): taken to lie in ``[0, 1]``, the usual convention of float
  exports; an image with values outside ``[0, 1]`` is stretched from its own finite
  min..max. NaN and infinite values become 0.

EXIF orientation is applied, animated GIFs and multi-page TIFFs give their first
frame, and the shorter side is resized to the target size then centre-cropped.

It is not a general image library: no colour management, no HDR tone mapping, no
augmentation (random flips happen later, on whole uint8 batches).

Errors are Pillow's own (``PIL.UnidentifiedImageError``, ``OSError`` for truncated
files, ``PIL.Image.DecompressionBombError`` above Pillow's pixel limit, ...). Callers
that need a file name in the message wrap them in :class:`ImageDecodeError`.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np
from PIL import ExifTags, Image, ImageOps

__all__ = [
    "DEFAULT_BACKGROUND",
    "BadImageWarning",
    "ImageDecodeError",
    "decode_image",
    "load_image",
    "resize_center_crop",
]

ImageSource = Union[str, os.PathLike, BinaryIO]

#: Colour that transparent pixels are composited onto (white, see module docstring).
DEFAULT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)

# Bump when decoding changes in a way that changes pixels: on-disk caches are keyed
# on it, so stale caches are rebuilt instead of silently mixing two decoders.
DECODER_VERSION = 1

# Bicubic with antialiasing (Pillow widens the filter support by the reduction
# factor when downscaling, so it is a true low-pass filter). Chosen over Lanczos
# because its smaller support rings less around the hard edges common in
# drawings, text and our shapes data, and costs less per pixel.
_RESAMPLE = Image.Resampling.BICUBIC
# Before large reductions Pillow first box-averages by an integer factor, then runs
# the bicubic filter on an image at most 3x larger than the target. Pillow's docs
# note that 3.0 is visually indistinguishable from a full-support resize; it makes
# big PNGs several times cheaper.
_REDUCING_GAP = 3.0

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageDecodeError(RuntimeError):
    """An image file could not be decoded. The message names the file and the reason.

    Attributes:
        path: The file that failed, when known.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        # A single positional argument keeps the exception re-raisable by PyTorch's
        # DataLoader, which rebuilds worker exceptions as ``type(exc)(message)``.
        super().__init__(message)
        self.path = path


class BadImageWarning(UserWarning):
    """Unreadable image files were skipped (``on_error="skip"``).

    A dedicated category so that it can be filtered, e.g.
    ``warnings.simplefilter("error", BadImageWarning)`` in a test suite.
    """


def load_image(
    source: ImageSource,
    channels: int = 3,
    *,
    background: int | tuple[int, int, int] = DEFAULT_BACKGROUND,
    min_size: int | None = None,
) -> Image.Image:
    """Open an image file and return it upright in mode ``L`` or ``RGB``, fully loaded.

    Args:
        source: A path or a binary file object.
        channels: 1 for grayscale (mode ``L``), 3 for colour (mode ``RGB``; grayscale
            images are replicated to three channels).
        background: Grey level or RGB colour that transparent pixels are composited
            onto. Defaults to white.
        min_size: When given, the decoder may return an image whose sides are smaller
            than the file's but both still at least ``min_size``. For JPEG this uses
            libjpeg's scaled decoding (DCT-domain downscaling by 2, 4 or 8), which
            is several times faster than decoding at full size and then resizing.

    Returns:
        A loaded PIL image; the file is closed.

    Raises:
        ValueError: If ``channels`` is not 1 or 3.
        PIL.UnidentifiedImageError, OSError, PIL.Image.DecompressionBombError: From
            Pillow, for files it cannot read.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("RGBA", (4, 2), (255, 0, 0, 0)).save(buffer, "PNG")
        >>> image = load_image(buffer)  # fully transparent: the white background shows
        >>> image.mode, image.size, image.getpixel((0, 0))
        ('RGB', (4, 2), (255, 255, 255))
    """
    _check_channels(channels)
    with Image.open(source) as image:
        # Animated GIF/WebP/PNG and multi-page TIFF open on their first frame; seek
        # explicitly anyway so a caller's earlier seek on a shared file can't leak in.
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        if min_size is not None and image.format == "JPEG":
            # draft() must run before the pixels are read. A square request keeps it
            # independent of the EXIF rotation applied below. Asking for "L" lets
            # libjpeg skip the chroma planes when grayscale is all we need.
            want_mode = "L" if channels == 1 and image.mode in ("RGB", "L") else None
            image.draft(want_mode, (min_size, min_size))
        image.load()
        image = _apply_exif_orientation(image)
        return _to_l_or_rgb(image, channels, background)


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` with antialiasing, then centre-crop a square.

    Both steps happen in one resampling pass: the centred square is cut out in source
    coordinates (with sub-pixel precision) and resized straight to ``size x size``, so
    the discarded borders are never resampled.

    Args:
        image: Any PIL image.
        size: Side of the square output, in pixels.

    Returns:
        A ``size x size`` image in the same mode.

    Example:
        >>> from PIL import Image
        >>> resize_center_crop(Image.new("RGB", (300, 200)), 64).size
        (64, 64)
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}.")
    width, height = image.size
    if (width, height) == (size, size):
        return image
    side = min(width, height)
    left = (width - side) / 2
    top = (height - side) / 2
    return image.resize(
        (size, size),
        _RESAMPLE,
        box=(left, top, left + side, top + side),
        reducing_gap=_REDUCING_GAP,
    )


def decode_image(
    source: ImageSource,
    image_size: int,
    channels: int = 3,
    *,
    background: int | tuple[int, int, int] = DEFAULT_BACKGROUND,
) -> np.ndarray:
    """Decode an image file into a square uint8 array of shape ``(channels, size, size)``.

    This is what the data loaders and the cache run for every file: load (see
    :func:`load_image`), resize the shorter side to ``image_size``, centre-crop.

    Args:
        source: A path or a binary file object.
        image_size: Side of the square output, in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        background: Grey level or RGB colour under transparent pixels (white).

    Returns:
        A C-contiguous ``numpy.uint8`` array ``(channels, image_size, image_size)``.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("L", (40, 20), 128).save(buffer, "PNG")
        >>> array = decode_image(buffer, image_size=8, channels=3)
        >>> array.shape, array.dtype, int(array.min()), int(array.max())
        ((3, 8, 8), dtype('uint8'), 128, 128)
    """
    image = load_image(source, channels, background=background, min_size=image_size)
    image = resize_center_crop(image, image_size)
    array = np.asarray(image)
    if array.ndim == 2:
        return array[None].copy()
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(
            f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}."
        )


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    # Reading the tag first avoids exif_transpose's full-image copy for the vast
    # majority of files that are already upright.
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - broken EXIF must not make a fine image unreadable
        return image
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF on rewrite
            transposed = ImageOps.exif_transpose(image)
        if transposed is not None:
            return transposed
    return image


def _to_l_or_rgb(
    image: Image.Image, channels: int, background: int | tuple[int, int, int]
) -> Image.Image:
    mode = image.mode
    if mode == "F" or mode == "I" or mode.startswith("I;"):
        image = _high_depth_to_l(image)
    elif mode == "1":
        image = image.convert("L")
    elif mode == "LAB":
        # Pillow's plain convert() copies LAB channels as if they were RGB.
        from PIL import ImageCms  # needs Pillow built with LittleCMS: import only here

        image = ImageCms.applyTransform(image, _lab_to_srgb())
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        if mode == "La":  # Pillow converts premultiplied La only to LA
            image = image.convert("LA")
        image = _composite(image.convert("RGBA"), background)
    elif mode not in ("L", "RGB"):
        # P, CMYK, YCbCr, HSV, ...: Pillow knows how to get to RGB.
        image = image.convert("RGB")
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


@functools.lru_cache(maxsize=1)
def _lab_to_srgb() -> Any:
    from PIL import ImageCms

    lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(lab, srgb, "LAB", "RGB")


def _composite(rgba: Image.Image, background: int | tuple[int, int, int]) -> Image.Image:
    colour = (background,) * 3 if isinstance(background, int) else tuple(background)
    canvas = Image.new("RGB", rgba.size, colour)
    # Pasting through the alpha mask blends: out = bg * (1 - a) + fg * a.
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image)
    if image.mode == "F":
        values = values.astype(np.float64)
        finite = np.isfinite(values)
        low, high = _finite_range(values, finite)
        values = np.where(finite, values, low)
        if low >= 0.0 and high <= 1.0:
            scaled = values * 255.0
        else:
            scaled = _stretch(values, low, high)
        scaled = np.where(finite, scaled, 0.0)  # NaN and inf carry no level: black
    else:
        values = values.astype(np.float64)
        low, high = (float(values.min()), float(values.max())) if values.size else (0, 0)
        if image.mode.startswith("I;16") or (low >= 0 and high <= 65535):
            scaled = values * (255.0 / 65535.0)
        else:
            scaled = _stretch(values, low, high)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _finite_range(values: np.ndarray, finite: np.ndarray) -> tuple[float, float]:
    if not finite.any():
        return 0.0, 0.0
    kept = values[finite]
    return float(kept.min()), float(kept.max())


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros_like(values)
    return (values - low) * (255.0 / (high - low))


def _describe_error(error: BaseException, path: str | None = None) -> str:
    """One-line reason for a failed decode, e.g. ``"OSError: image file is truncated"``.

    The file name is dropped from Pillow's messages when given: callers print it anyway.
    """
    text = str(error).strip()
    text = text.splitlines()[0] if text else ""
    if path is not None:
        text = text.replace(f" '{path}'", "").replace(f" {path}", "").rstrip(": ").strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _file_error(path: str | Path, reason: str) -> ImageDecodeError:
    """Build the error raised with ``on_error="raise"``: names the file, the reason, the fix."""
    return ImageDecodeError(
        f"Could not read image file '{path}': {reason}. Fix or remove the file, or pass "
        "on_error='skip' to leave unreadable files out with a warning.",
        path=str(path),
    )
