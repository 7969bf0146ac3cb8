"""Image files -> the model's tensor, exactly as the card's ``ImageFiles`` says.

Training decodes every file of an image folder with ``decode``, and the service
decodes an upload with the same function, so a file posted to the service gives
the tensor the model was trained on. The steps, in this order:

1. the format from the file's first bytes (PNG or JPEG; nothing else is opened);
2. the header only: the size (when the card does not resize: exactly the model's) and
   the pixel count against ``max_pixels`` are checked before any pixel is decoded
   (decompression bombs), and the pixel format must be 8-bit;
3. Pillow's ``convert(mode)`` (``L``: ITU-R 601-2 luma; ``RGB``; an alpha channel is
   dropped, not composited; EXIF orientation is not applied);
4. if the size differs from (height, width): Pillow's ``resize`` with the card's filter;
5. ``float32(pixel * scale)`` in (C, H, W) order.

Every failure is an ``ImageFileError`` with a one-line reason that never quotes
the file's bytes. Needs numpy and Pillow (both extras install them); the rest of
``bnfold`` does not import this module.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bnfold.card import ImageFiles

__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "SUFFIXES",
    "ImageFileError",
    "ImageHeader",
    "decode",
    "read_header",
]

FORMATS = ("PNG", "JPEG")
MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}
GRAY_MODES = frozenset({"1", "L", "LA"})
COLOR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"})
_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


class ImageFileError(ValueError):
    """A file that cannot become the model's tensor; ``status`` is the HTTP status it maps to:
    415 not a PNG/JPEG (or not the declared one), 413 too many pixels, 422 anything else."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, before any pixel is decoded."""

    format: str
    mode: str
    width: int
    height: int

    @property
    def gray(self) -> bool:
        """One channel of 8-bit gray (``1``, ``L`` or ``LA``)."""
        return self.mode in GRAY_MODES


def _sniff(data: bytes) -> str | None:
    return next((fmt for fmt, sig in _SIGNATURES.items() if data.startswith(sig)), None)


def _open(
    data: bytes, max_pixels: int, declared: str | None, size: tuple[int, int] | None = None
) -> Image.Image:
    """The opened image (header only); ``size``: the only (width, height) it may have."""
    fmt = _sniff(data)
    if fmt is None:
        raise ImageFileError("not a PNG or JPEG image", status=415)
    if declared is not None and fmt != declared:
        raise ImageFileError(f"the data is a {fmt} image, not {declared}", status=415)
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit; ours is checked just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError:
        raise ImageFileError(f"the image has more than {max_pixels} pixels", status=413) from None
    except Exception:  # Pillow raises many unrelated types for malformed headers
        raise ImageFileError(f"the {fmt} data is corrupt or truncated") from None
    width, height = image.size
    if size is not None and image.size != size:
        raise ImageFileError(
            f"the image is {width}x{height} pixels (width x height); the model takes "
            f"{size[0]}x{size[1]}"
        )
    if width * height > max_pixels:
        raise ImageFileError(
            f"the image has {width}x{height} pixels, more than the limit of {max_pixels}",
            status=413,
        )
    if image.mode not in GRAY_MODES | COLOR_MODES:
        raise ImageFileError(
            f"pixel format {image.mode!r} is not supported (8-bit gray or color only)"
        )
    return image


def read_header(data: bytes, max_pixels: int) -> ImageHeader:
    """Format, pixel mode and size of a PNG/JPEG, checked as ``decode`` checks them."""
    image = _open(data, max_pixels, None)
    return ImageHeader(str(image.format), image.mode, image.size[0], image.size[1])


def decode(
    data: bytes, files: ImageFiles, height: int, width: int, *, declared: str | None = None
) -> np.ndarray:
    """The (C, H, W) float32 tensor of a PNG/JPEG file, per ``files``.

    ``declared``: the format the sender announced (``"PNG"``/``"JPEG"``), which the
    bytes must match. Raises ``ImageFileError``.
    """
    exact = (width, height) if files.resize is None else None
    image = _open(data, files.max_pixels, declared, exact)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette transparency notes; the result is defined
            picture = image.convert(files.mode)
    except Exception:  # any decoder failure on untrusted bytes is a corrupt file
        raise ImageFileError(f"the {image.format} data is corrupt or truncated") from None
    if picture.size != (width, height) and files.resize is not None:
        picture = picture.resize((width, height), resample=_FILTERS[files.resize])
    pixels = np.asarray(picture, dtype=np.float64) * files.scale
    chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(chw, dtype=np.float32)
