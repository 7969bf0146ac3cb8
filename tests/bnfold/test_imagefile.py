"""bnfold/imagefile.py: PNG/JPEG bytes -> the tensor the card describes, and every refusal."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from bnfold.card import ImageFiles
from bnfold.imagefile import ImageFileError, decode, read_header

GRAY = ImageFiles(mode="L", scale=1 / 255, max_pixels=64)
RGB = ImageFiles(mode="RGB", scale=1 / 255, max_pixels=64)
RESIZE = ImageFiles(mode="L", resize="bilinear", scale=1 / 255, max_pixels=64)


def encoded(pixels: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, fmt)
    return buffer.getvalue()


def gray_pixels() -> np.ndarray:
    return (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)


def noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)


def test_png_gray_and_rgb_are_pixel_times_scale() -> None:
    pixels = gray_pixels()
    got = decode(encoded(pixels), GRAY, 8, 8)
    assert got.dtype == np.float32 and got.shape == (1, 8, 8)
    np.testing.assert_array_equal(got[0], (pixels.astype(np.float64) / 255).astype(np.float32))
    color = np.stack([pixels, 255 - pixels, pixels // 2], axis=-1)
    got = decode(encoded(color), RGB, 8, 8)
    assert got.shape == (3, 8, 8)
    np.testing.assert_array_equal(got[1], ((255 - pixels) / 255).astype(np.float32))
    # An RGB file for a gray model: Pillow's luma, the same as Image.convert("L").
    luma = np.asarray(Image.fromarray(color).convert("L"), dtype=np.float64) / 255
    np.testing.assert_array_equal(decode(encoded(color), GRAY, 8, 8)[0], luma.astype(np.float32))


def test_jpeg_decodes_as_pillow_does_and_resizes_with_the_card_filter() -> None:
    data = encoded(gray_pixels(), "JPEG")
    pillow = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
    np.testing.assert_array_equal(decode(data, GRAY, 8, 8)[0], (pillow / 255).astype(np.float32))
    resizing = ImageFiles(mode="L", resize="bilinear", scale=1 / 255, max_pixels=64)
    small = Image.open(io.BytesIO(data)).convert("L").resize((4, 5), Image.Resampling.BILINEAR)
    want = (np.asarray(small, dtype=np.float64) / 255).astype(np.float32)
    np.testing.assert_array_equal(decode(data, resizing, 5, 4)[0], want)


def test_header_reports_format_mode_and_size() -> None:
    header = read_header(encoded(gray_pixels()), 64)
    assert (header.format, header.mode, header.width, header.height, header.gray) == (
        "PNG", "L", 8, 8, True
    )  # fmt: skip


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` and whose data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    out = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
    out += struct.pack(">I", zlib.crc32(chunk))
    idat = b"IDAT" + zlib.compress(b"\0" * 10)
    out += struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat))
    return out


@pytest.mark.parametrize(
    ("data", "files", "status", "message"),
    [
        (b"GIF89a....", GRAY, 415, "not a PNG or JPEG image"),
        (b"", GRAY, 415, "not a PNG or JPEG image"),
        (
            _png_header_only(9_000, 9_000),
            RESIZE,
            413,
            "has 9000x9000 pixels, more than the limit of 64",
        ),
        (_png_header_only(9_000, 9_000), GRAY, 422, "9000x9000 pixels (width x height); the"),
        (_png_header_only(50_000, 50_000), RESIZE, 413, "the image has more than 64 pixels"),
        (_png_header_only(8, 8), GRAY, 422, "the PNG data is corrupt or truncated"),
        (encoded(noise())[:60], GRAY, 422, "corrupt or truncated"),
        (
            encoded(np.zeros((4, 4), np.uint8)),
            GRAY,
            422,
            "the image is 4x4 pixels (width x height)",
        ),
        (
            encoded(np.zeros((8, 8), np.uint16)),
            GRAY,
            422,
            "is not supported (8-bit gray or color only)",
        ),
    ],
)
def test_refusals(data: bytes, files: ImageFiles, status: int, message: str) -> None:
    with pytest.raises(ImageFileError) as info:
        decode(data, files, 8, 8)
    assert info.value.status == status
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_the_declared_format_must_match() -> None:
    with pytest.raises(ImageFileError) as info:
        decode(encoded(gray_pixels(), "JPEG"), GRAY, 8, 8, declared="PNG")
    assert info.value.status == 415 and info.value.message == "the data is a JPEG image, not PNG"
