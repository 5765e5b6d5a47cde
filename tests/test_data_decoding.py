"""Decoding of every Pillow mode, orientation, frames, resizing (lightning_gen.data.decoding)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lightning_gen.data.decoding import (
    ImageDecodeError,
    decode_image,
    load_image,
    resize_center_crop,
)


def _file(image: Image.Image, fmt: str, **save_args) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    buffer.seek(0)
    return buffer


def _pixel(array: np.ndarray) -> tuple[int, ...]:
    """The single colour of a uniform (C, H, W) array."""
    assert (array == array[:, :1, :1]).all(), "expected a uniform image"
    return tuple(int(v) for v in array[:, 0, 0])


# ----------------------------------------------------------------------------- modes


def test_grayscale_is_replicated_for_three_channels_and_kept_for_one():
    source = Image.new("L", (10, 10), 100)
    assert _pixel(decode_image(_file(source, "PNG"), 4, channels=3)) == (100, 100, 100)
    assert _pixel(decode_image(_file(source, "PNG"), 4, channels=1)) == (100,)


def test_rgb_is_exact_and_grayscale_conversion_uses_luma():
    source = Image.new("RGB", (10, 10), (200, 40, 10))
    assert _pixel(decode_image(_file(source, "PNG"), 4)) == (200, 40, 10)
    expected = source.convert("L").getpixel((0, 0))
    assert _pixel(decode_image(_file(source, "PNG"), 4, channels=1)) == (expected,)


def test_bilevel_mode_1_becomes_black_and_white():
    source = Image.new("1", (8, 8), 1)
    assert _pixel(decode_image(_file(source, "PNG"), 8, channels=3)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [(0, (255, 255, 255)), (255, (0, 0, 200)), (128, (127, 127, 227))],
    ids=["transparent", "opaque", "half"],
)
def test_rgba_is_composited_on_white(alpha, expected):
    source = Image.new("RGBA", (6, 6), (0, 0, 200, alpha))
    assert _pixel(decode_image(_file(source, "PNG"), 6)) == expected


def test_rgba_background_is_configurable():
    source = Image.new("RGBA", (6, 6), (250, 250, 250, 0))
    array = decode_image(_file(source, "PNG"), 6, background=(0, 0, 0))
    assert _pixel(array) == (0, 0, 0)


def test_la_is_composited_on_white():
    source = Image.new("LA", (6, 6), (0, 0))
    assert _pixel(decode_image(_file(source, "PNG"), 6, channels=1)) == (255,)
    source = Image.new("LA", (6, 6), (40, 255))
    assert _pixel(decode_image(_file(source, "PNG"), 6, channels=3)) == (40, 40, 40)


def test_palette_without_transparency_gives_palette_colours():
    source = Image.new("P", (6, 6), 1)
    source.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    loaded = Image.open(_file(source, "PNG"))
    assert loaded.mode == "P" and "transparency" not in loaded.info
    assert _pixel(decode_image(_file(source, "PNG"), 6)) == (10, 200, 30)


def test_palette_with_transparency_shows_the_background():
    source = Image.new("P", (6, 6), 1)
    source.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    encoded = _file(source, "PNG", transparency=1)
    assert Image.open(encoded).info.get("transparency") == 1
    encoded.seek(0)
    assert _pixel(decode_image(encoded, 6)) == (255, 255, 255)


def test_grayscale_with_transparent_colour_key():
    source = Image.new("L", (6, 6), 7)
    assert _pixel(decode_image(_file(source, "PNG", transparency=7), 6, channels=1)) == (255,)


def test_cmyk_is_converted_to_rgb():
    cyan = Image.new("CMYK", (6, 6), (255, 0, 0, 0))
    assert _pixel(decode_image(_file(cyan, "TIFF"), 6)) == (0, 255, 255)
    blank = Image.new("CMYK", (6, 6), (0, 0, 0, 0))
    assert _pixel(decode_image(_file(blank, "TIFF"), 6)) == (255, 255, 255)


def test_lab_is_converted_as_colour_not_relabelled():
    white = Image.new("LAB", (6, 6), (255, 128, 128))  # L=100, a=b=0
    assert all(v >= 250 for v in _pixel(decode_image(_file(white, "TIFF"), 6)))
    reddish = Image.new("LAB", (6, 6), (128, 188, 128))  # a > 0: towards red
    red, green, blue = _pixel(decode_image(_file(reddish, "TIFF"), 6))
    assert red > green + 80 and red > blue + 40


def test_cmyk_jpeg_decodes():
    source = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # red
    red, green, blue = _pixel_mean(decode_image(_file(source, "JPEG", quality=95), 16))
    assert red > 200 and green < 50 and blue < 50


def _pixel_mean(array: np.ndarray) -> tuple[float, ...]:
    return tuple(float(c.mean()) for c in array)


def test_16_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 257 * 100, 65535, 32896]], dtype=np.uint16).repeat(4, axis=0)
    encoded = _file(Image.fromarray(values), "PNG")
    assert Image.open(encoded).mode == "I;16"
    encoded.seek(0)
    image = load_image(encoded, channels=1)
    assert np.asarray(image)[0].tolist() == [0, 100, 255, 128]


def test_32_bit_integer_in_16_bit_range_is_scaled_as_16_bit():
    values = np.array([[0, 257 * 50, 65535]], dtype=np.int32)
    encoded = _file(Image.fromarray(values), "TIFF")
    assert Image.open(encoded).mode == "I"
    encoded.seek(0)
    assert np.asarray(load_image(encoded, channels=1))[0].tolist() == [0, 50, 255]


def test_32_bit_integer_outside_16_bit_range_is_stretched():
    values = np.array([[-1000, 0, 1000]], dtype=np.int32)
    encoded = _file(Image.fromarray(values), "TIFF")
    assert np.asarray(load_image(encoded, channels=1))[0].tolist() == [0, 128, 255]


def test_float_in_unit_range_is_scaled_by_255():
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    encoded = _file(Image.fromarray(values), "TIFF")
    assert Image.open(encoded).mode == "F"
    encoded.seek(0)
    assert np.asarray(load_image(encoded, channels=1))[0].tolist() == [0, 128, 255]


def test_float_outside_unit_range_is_stretched_and_nan_is_zero():
    values = np.array([[-2.0, 0.0, 2.0, np.nan]], dtype=np.float32)
    encoded = _file(Image.fromarray(values), "TIFF")
    assert np.asarray(load_image(encoded, channels=1))[0].tolist() == [0, 128, 255, 0]


def test_high_depth_grayscale_is_replicated_to_rgb():
    values = np.full((4, 4), 65535, dtype=np.uint16)
    assert _pixel(decode_image(_file(Image.fromarray(values), "PNG"), 4)) == (255, 255, 255)


# ---------------------------------------------------------- orientation and frames


def _left_red_right_blue(width: int = 40, height: int = 20) -> Image.Image:
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    return image


def test_exif_orientation_is_applied():
    source = _left_red_right_blue()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright = load_image(_file(source, "JPEG", exif=exif, quality=95))
    assert upright.size == (20, 40)  # width and height swapped
    top = upright.getpixel((10, 5))
    bottom = upright.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the left half (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_image_without_orientation_is_untouched():
    upright = load_image(_file(_left_red_right_blue(), "PNG"))
    assert upright.size == (40, 20)
    assert upright.getpixel((5, 10)) == (255, 0, 0)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    encoded = _file(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(encoded).n_frames == 2
    encoded.seek(0)
    assert _pixel(decode_image(encoded, 8)) == (255, 0, 0)


def test_multipage_tiff_gives_first_page():
    pages = [Image.new("RGB", (8, 8), colour) for colour in [(0, 200, 0), (0, 0, 255)]]
    encoded = _file(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(encoded).n_frames == 2
    encoded.seek(0)
    assert _pixel(decode_image(encoded, 8)) == (0, 200, 0)


# ------------------------------------------------------------------ resize and crop


def test_output_is_square_contiguous_uint8_chw():
    array = decode_image(_file(Image.new("RGB", (50, 30)), "PNG"), 16)
    assert array.shape == (3, 16, 16) and array.dtype == np.uint8
    assert array.flags["C_CONTIGUOUS"]


def test_centre_crop_keeps_the_middle_of_wide_images():
    pixels = np.zeros((200, 300), np.uint8)
    pixels[:, 50:250] = 255  # only the central 200x200 square is white
    array = decode_image(_file(Image.fromarray(pixels), "PNG"), 16, channels=1)
    # The edge columns see a little black through the bicubic filter, like a
    # resize-then-crop would; a crop of the wrong region would give 0 somewhere.
    assert array.min() >= 225


def test_resize_matches_resize_then_crop():
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8))
    one_pass = np.asarray(resize_center_crop(source, 20), dtype=np.int16)
    two_pass = np.asarray(
        source.resize((30, 20), Image.Resampling.BICUBIC).crop((5, 0, 25, 20)), dtype=np.int16
    )
    assert np.abs(one_pass - two_pass).mean() < 2.0


def test_downscaling_is_antialiased():
    checkerboard = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    array = decode_image(_file(Image.fromarray(checkerboard), "PNG"), 16, channels=1)
    # Without a low-pass filter every output pixel would be 0 or 255.
    assert np.abs(array.astype(int) - 128).max() <= 4


def test_small_images_are_upscaled():
    array = decode_image(_file(Image.new("RGB", (4, 6), (9, 8, 7)), "PNG"), 16)
    assert array.shape == (3, 16, 16) and _pixel(array) == (9, 8, 7)


def test_jpeg_reduced_size_decoding_stays_close_to_full_decoding():
    rng = np.random.default_rng(1)
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    encoded = _file(coarse.resize((256, 256), Image.Resampling.BICUBIC), "JPEG", quality=95)
    fast = decode_image(encoded, 32).astype(np.int16)
    encoded.seek(0)
    with Image.open(encoded) as full:
        reference = np.asarray(resize_center_crop(full.convert("RGB"), 32)).transpose(2, 0, 1)
    assert np.abs(fast - reference.astype(np.int16)).mean() < 3.0


def test_grayscale_jpeg_draft_for_one_channel():
    source = Image.new("RGB", (128, 128), (200, 100, 50))
    array = decode_image(_file(source, "JPEG", quality=95), 32, channels=1)
    expected = source.convert("L").getpixel((0, 0))
    assert array.shape == (1, 32, 32) and abs(int(array.mean()) - expected) <= 2


# ------------------------------------------------------------------------ errors


def test_invalid_channels_is_rejected_with_the_value():
    with pytest.raises(ValueError, match="channels must be 1 .* got 4"):
        decode_image(_file(Image.new("RGB", (4, 4)), "PNG"), 4, channels=4)


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(Image.DecompressionBombError):
        decode_image(_file(Image.new("RGB", (64, 64)), "PNG"), 8)


def test_truncated_file_raises():
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = _file(noisy, "PNG").getvalue()
    with pytest.raises((OSError, SyntaxError)):
        decode_image(io.BytesIO(data[: len(data) // 2]), 8)


def test_decode_error_survives_dataloader_reraise():
    # PyTorch rebuilds worker exceptions as type(error)(message).
    error = ImageDecodeError("Could not read image file 'x.png': bad")
    rebuilt = type(error)(str(error))
    assert "x.png" in str(rebuilt)
