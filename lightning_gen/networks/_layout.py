"""Shared shape arithmetic for the convolutional networks (DCGAN and the conv VAE).

Both families grow or shrink a 4x4 feature map by factors of two, so they agree on which image sizes
are valid and on how many feature maps each resolution gets. Keeping that in one place means a VAE
and a GAN of the same ``image_size`` and ``width`` have mirror-image layouts.
"""

from __future__ import annotations

SUPPORTED_IMAGE_SIZES = (16, 32, 64, 128, 256)

# DCGAN doubles the feature maps each time it halves the resolution. Past 8x the base width the
# networks grow quickly without a matching gain at these sizes, so the multiplier is capped there.
_MAX_WIDTH_MULTIPLIER = 8


def validate_image_size(image_size: int) -> int:
    """Return ``image_size`` if it is a supported power of two, else raise ``ValueError``."""
    if not isinstance(image_size, int) or image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"image_size must be a power of two from 16 to 256 (one of {SUPPORTED_IMAGE_SIZES}), got {image_size!r}. "
            "Resize your data (ImageFolderDataModule(image_size=...)) to one of these sizes."
        )
    return image_size


def validate_positive(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 1, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    return value


def feature_widths(image_size: int, width: int) -> list[int]:
    """Feature-map counts from the 4x4 resolution up to ``image_size // 2``.

    Example:
        >>> feature_widths(64, 64)
        [512, 256, 128, 64]
        >>> feature_widths(16, 8)
        [16, 8]
    """
    validate_image_size(image_size)
    num_resolutions = image_size.bit_length() - 3  # 4x4, 8x8, ..., image_size/2
    multipliers = [min(2 ** (num_resolutions - 1 - i), _MAX_WIDTH_MULTIPLIER) for i in range(num_resolutions)]
    return [width * m for m in multipliers]
