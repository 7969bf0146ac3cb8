"""Image folders: ``DIR/<class>/*.png|jpg|jpeg`` -> image tensors, decoded as the service will.

Class names are the sub-folder names. The channels default to 1 when every file
is 8-bit gray (Pillow modes ``1``, ``L``, ``LA``), else 3; the size defaults to the
files' own when they all agree. ``--channels`` and ``--image-size`` override both;
with ``--image-size`` every file of another size is resized (bilinear), and so is
an upload to the service. Pixels are scaled by 1/255 (values 0..1); the input
standardization (per channel, folded into the first layer) comes on top, as for
every dataset. Every file is decoded by ``bnfold.imagefile.decode`` with the
``ImageFiles`` that the card will carry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bnfold.card import ImageFiles
from bnfold.imagefile import SUFFIXES, ImageFileError, ImageHeader, decode, read_header
from training.errors import UsageError

SCALE = 1.0 / 255.0
RESIZE: Literal["bilinear"] = "bilinear"
# An upload to a model that resizes may be this large (a 12-megapixel photo fits); a model
# without resizing takes exactly its own size.
RESIZED_MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ImageFolder:
    """Every image of a folder: tensors ``x`` (N, C, H, W) float32 and folder names ``y``."""

    x: np.ndarray
    y: np.ndarray
    files: list[Path]
    decoding: ImageFiles
    sha256: str
    description: str


def list_images(root: Path) -> tuple[list[Path], list[str]]:
    """Image files and their class (folder) names, sorted; hidden entries are skipped."""
    if not root.is_dir():
        raise UsageError(f"image folder not found: {root}")
    files: list[Path] = []
    names: list[str] = []
    for folder in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if not folder.is_dir():
            if folder.suffix.lower() in SUFFIXES:
                raise UsageError(
                    f"{folder}: images must sit in one sub-folder per class (DIR/<class>/*.png)"
                )
            continue
        inside = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        for path in inside:
            if path.is_dir() or path.suffix.lower() not in SUFFIXES:
                raise UsageError(
                    f"{path}: not a .png, .jpg or .jpeg file (class folders hold images only)"
                )
        if not inside:
            raise UsageError(f"{folder}: class folder has no images")
        files += inside
        names += [folder.name] * len(inside)
    if not files:
        raise UsageError(f"{root}: no class sub-folders with images (DIR/<class>/*.png|jpg)")
    return files, names


def read_image_folder(
    root: Path,
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    *,
    model: tuple[ImageFiles, int, int] | None = None,
) -> ImageFolder:
    """Decode every image under ``root`` (see the module docstring for the defaults).

    ``model``: decode as a trained model does, ``(files, height, width)`` from its card.
    """
    files, names = list_images(root)
    digest = hashlib.sha256()
    headers = []
    for path in files:
        data = _read(path)
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
        try:
            headers.append(read_header(data, RESIZED_MAX_PIXELS))
        except ImageFileError as exc:
            raise UsageError(f"{path}: {exc.message}") from None
    if model is not None:
        decoding, height, width = model
    else:
        decoding, height, width = _decoding(files, headers, channels, image_size)
    x = np.empty((len(files), 1 if decoding.mode == "L" else 3, height, width), dtype=np.float32)
    for i, path in enumerate(files):
        try:
            x[i] = decode(_read(path), decoding, height, width)
        except ImageFileError as exc:
            raise UsageError(f"{path}: {exc.message}") from None
    return ImageFolder(
        x=x,
        y=np.array(names, dtype=object),
        files=files,
        decoding=decoding,
        sha256=digest.hexdigest(),
        description=f"{x.shape[1]}x{height}x{width} images from {root.name}/ "
        f"({decoding.mode}, pixel/255)",
    )


def _decoding(
    files: list[Path],
    headers: list[ImageHeader],
    channels: int | None,
    image_size: tuple[int, int] | None,
) -> tuple[ImageFiles, int, int]:
    if channels is None:
        channels = 1 if all(h.gray for h in headers) else 3
    if channels not in (1, 3):
        raise UsageError(f"--channels must be 1 or 3, got {channels}")
    mode: Literal["L", "RGB"] = "L" if channels == 1 else "RGB"
    if image_size is not None:
        height, width = image_size
        if height < 1 or width < 1:
            raise UsageError(f"--image-size must be positive, got {height},{width}")
        limit = max(RESIZED_MAX_PIXELS, height * width)
        return ImageFiles(mode=mode, resize=RESIZE, scale=SCALE, max_pixels=limit), height, width
    sizes: dict[tuple[int, int], Path] = {}
    for path, header in zip(files, headers, strict=True):
        sizes.setdefault((header.width, header.height), path)
        if len(sizes) > 1:
            (w1, h1), (w2, h2) = sizes
            first, second = sizes.values()
            raise UsageError(
                f"{first} is {w1}x{h1} pixels but {second} is {w2}x{h2} (width x height); "
                "pass --image-size H,W to resize every file to one size"
            )
    ((width, height),) = sizes
    return ImageFiles(mode=mode, scale=SCALE, max_pixels=width * height), height, width


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
