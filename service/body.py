"""Reading request bodies: content type (415) and size limit (413) before any parsing.

Plain functions over ASGI ``receive`` and header values, shared by the FastAPI
routes and the ``/predict`` fast path.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Receive

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.images import Upload, is_upload
from service.jsonio import loads

JSON = "application/json"
BINARY = "application/octet-stream"
BINARY_HEADER = "inference-header-content-length"  # Open Inference Protocol binary extension


def media_type(content_type: str | None) -> str | None:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return None if content_type is None else content_type.split(";", 1)[0].strip().lower()


def check_json(content_type: str | None) -> None:
    """415 unless the body is declared as JSON."""
    if media_type(content_type) != JSON:
        missing = " (none was sent)" if content_type is None else ""
        raise UnsupportedMediaType(f"Content-Type must be {JSON}{missing}")


def check_length(declared: str | None, limit: int) -> None:
    """413 from the Content-Length header alone, before reading anything."""
    if declared is None:
        return
    if not (declared.isascii() and declared.isdigit()):
        raise BadRequest("the Content-Length header is not a number")
    if len(declared) > 20 or int(declared) > limit:
        raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")


async def receive_body(receive: Receive, limit: int) -> bytes:
    """The whole body, counting chunks as they arrive (chunked uploads have no length)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(headers: Any, receive: Receive, limit: int) -> Any:
    """A JSON body declared as ``application/json`` (``headers``: a Starlette ``Headers``)."""
    check_json(headers.get("content-type"))
    check_length(headers.get("content-length"), limit)
    return loads(await receive_body(receive, limit))


async def read_sample(headers: Any, receive: Receive, limit: int, files: bool) -> Any:
    """A ``/predict`` body: parsed JSON, or, when the model takes image ``files``, an image
    file (``image/png``, ``image/jpeg``, ``multipart/form-data``) as an ``Upload`` that
    ``service.images`` decodes."""
    content_type = headers.get("content-type")
    media = media_type(content_type)
    if is_upload(media):
        if not files:
            raise UnsupportedMediaType(
                f"this model takes no image files (its card has no image.files): send {JSON}"
            )
        check_length(headers.get("content-length"), limit)
        assert media is not None and content_type is not None
        return Upload(media, content_type, await receive_body(receive, limit))
    if media != JSON and files:
        missing = " (none was sent)" if content_type is None else ""
        raise UnsupportedMediaType(
            f"Content-Type must be {JSON}, image/png, image/jpeg or multipart/form-data{missing}"
        )
    return await read_json(headers, receive, limit)


async def read_inference(headers: Any, receive: Receive, limit: int) -> tuple[Any, bytes | None]:
    """An Open Inference Protocol body: JSON, and the binary tensor data after it when the
    request uses the binary extension (else None).

    Clients such as tritonclient send no Content-Type, so a missing one means JSON.
    """
    media = media_type(headers.get("content-type"))
    header = headers.get(BINARY_HEADER)
    if header is None:
        if media not in (None, JSON):
            raise UnsupportedMediaType(f"Content-Type must be {JSON} (or none)")
    elif media not in (None, JSON, BINARY):
        raise UnsupportedMediaType(f"Content-Type must be {JSON} or {BINARY} (or none)")
    check_length(headers.get("content-length"), limit)
    body = await receive_body(receive, limit)
    if header is None:
        return loads(body), None
    if not (header.isascii() and header.isdigit()) or len(header) > 20 or int(header) > len(body):
        raise BadRequest(
            "Inference-Header-Content-Length must be the size in bytes of the JSON "
            f"header (0..{len(body)})"
        )
    split = int(header)
    return loads(body[:split]), body[split:]
