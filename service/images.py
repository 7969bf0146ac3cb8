"""Image uploads -> the model's tensor: a PNG/JPEG body, or one file in multipart/form-data.

Pure functions over a body already read within ``MAX_BODY_BYTES`` (the byte
limit); no HTTP here. The file is decoded by ``bnfold.imagefile.decode`` with
the card's ``image.files`` (mode, resize filter, scale, pixel cap), the very
function that decoded the training folder, so posting a file and posting the
tensor training made of it give the same answer. The pixel count is checked
from the header before any pixel is decoded.

Statuses: 415 for a body that is not PNG/JPEG (or not the declared one) or a
model without ``image.files``; 413 for too many pixels; 422 for a corrupt file
or one of the wrong size (when the model does not resize); 400 for a malformed
multipart body. Every message is one line and quotes nothing of the upload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from bnfold.card import InputSpec
from bnfold.imagefile import MEDIA_TYPES, ImageFileError, decode
from service.errors import (
    BadRequest,
    InvalidInput,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
)

# python-multipart logs every parse error as a warning quoting the offending bytes; the
# client gets the error, and the service logs no payload.
logging.getLogger("python_multipart.multipart").setLevel(logging.ERROR)

MULTIPART = "multipart/form-data"
UPLOAD_TYPES = (*MEDIA_TYPES, MULTIPART)
_OCTETS = "application/octet-stream"
_MAX_HEADER_BYTES = 8192  # all header lines of the one part together
_ERRORS: dict[int, type[ServiceError]] = {
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidInput,
}


def is_upload(media: str | None) -> bool:
    """Whether a (lower-case, parameter-free) media type is an image upload."""
    return media in UPLOAD_TYPES


@dataclass(frozen=True)
class Upload:
    """An image-file body: its media type (one of ``UPLOAD_TYPES``), full Content-Type, bytes."""

    media: str
    content_type: str
    data: bytes


class ImageCodec:
    """Decodes an uploaded image file for one card's ``InputSpec``."""

    def __init__(self, spec: InputSpec) -> None:
        image = spec.image
        self.files = None if image is None else image.files
        self.shape = spec.sample_shape

    def sample(self, upload: Upload) -> np.ndarray:
        """The (1, C, H, W) float32 tensor of an uploaded file."""
        files = self.files
        if files is None:
            raise UnsupportedMediaType(
                "this model takes no image files (its card has no image.files): "
                "send application/json"
            )
        if upload.media == MULTIPART:
            data, declared = single_file(upload.content_type, upload.data)
        else:
            data, declared = upload.data, MEDIA_TYPES[upload.media]
        _, height, width = self.shape
        try:
            tensor = decode(data, files, height, width, declared=declared)
        except ImageFileError as exc:
            raise _ERRORS[exc.status](f"image: {exc.message}") from None
        return tensor[None]


def single_file(content_type: str, body: bytes) -> tuple[bytes, str | None]:
    """The bytes of the one part of a multipart/form-data body, and its declared format
    (``None`` when the part says ``application/octet-stream`` or nothing)."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data needs a boundary parameter")
    part = _Part()
    parser = MultipartParser(boundary, part.callbacks(), max_size=max(len(body), 1))
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        raise BadRequest("malformed multipart/form-data body") from None
    if part.count != 1 or not part.ended:
        got = f"{part.count} parts" if part.ended else "an unterminated body"
        raise InvalidInput(f"multipart/form-data must hold exactly one file field, got {got}")
    disposition, params = parse_options_header(part.headers.get(b"content-disposition"))
    if disposition != b"form-data" or b"name" not in params:
        raise BadRequest("the multipart part needs Content-Disposition: form-data; name=...")
    declared_type = parse_options_header(part.headers.get(b"content-type"))[0].decode("latin-1")
    if declared_type in ("", _OCTETS):
        return b"".join(part.data), None
    if declared_type not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"the file field's Content-Type must be image/png or image/jpeg (or {_OCTETS})"
        )
    return b"".join(part.data), MEDIA_TYPES[declared_type]


class _Part:
    """Collects the parts of a multipart body; more than one stops the parse at once."""

    def __init__(self) -> None:
        self.count = 0
        self.ended = False
        self.headers: dict[bytes, bytes] = {}
        self.data: list[bytes] = []
        self._field = bytearray()
        self._value = bytearray()
        self._header_bytes = 0

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._add(self._field, d[s:e]),
            "on_header_value": lambda d, s, e: self._add(self._value, d[s:e]),
            "on_header_end": self._header_end,
            "on_part_data": lambda d, s, e: self.data.append(bytes(d[s:e])),
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self.count += 1
        if self.count > 1:
            raise InvalidInput("multipart/form-data must hold exactly one file field")

    def _add(self, target: bytearray, chunk: bytes) -> None:
        self._header_bytes += len(chunk)
        if self._header_bytes > _MAX_HEADER_BYTES:
            raise BadRequest(f"the multipart part's headers exceed {_MAX_HEADER_BYTES} bytes")
        target += chunk

    def _header_end(self) -> None:
        self.headers[bytes(self._field).strip().lower()] = bytes(self._value).strip()
        self._field.clear()
        self._value.clear()

    def _end(self) -> None:
        self.ended = True
