"""The service's errors, the one rule that picks their status, and the one handler.

Every error a client can cause is a ``ServiceError`` carrying its HTTP status::

    ServiceError (500)
    ├── BadRequest (400)            the request cannot be read (see the rule below)
    ├── Unauthorized (401)          missing or wrong bearer token
    ├── NotFound (404)              unknown route, model name or version
    ├── RequestTimeout (408)        headers or body slower than TIMEOUT_HEADERS/TIMEOUT_BODY
    ├── PayloadTooLarge (413)       body over MAX_BODY_BYTES (checked before reading)
    ├── UnsupportedMediaType (415)  content type other than application/json
    ├── InvalidInput (422)          well-formed, but does not fit the model (see below)
    ├── HeadersTooLarge (431)       more than MAX_HEADER_BYTES or MAX_HEADERS
    ├── NotReady (503)              the model is not loaded (yet)
    └── Overloaded (503)            MAX_CONCURRENCY requests already in progress

The rule, the same on ``/predict``, ``/predict/batch`` and ``/v2``:

* **400**: the body is not JSON (malformed, not UTF-8, nested too deeply, NaN or
  Infinity, which JSON does not have), or it breaks the protocol of the route
  itself: a header that is not a number, an Open Inference Protocol envelope with
  a missing field, a field of the wrong JSON type, an unknown field, a tensor
  whose data do not fill its own shape.
* **422**: well-formed JSON that does not fit the served model: another field,
  feature name, shape, batch size, input name or datatype than the card's, a value
  that is not a number, a number outside float32 range (``1e39`` and ``1e400``
  alike), more samples than MAX_BATCH_SIZE, an input for which the model's
  outputs are not finite.

Starlette's own 404/405 and FastAPI's validation errors (400) render the same
way. Responses are always ``{"error": "<one line>"}``. Messages name the field
and the expected shape; they never echo a client's value (not a key, a name, a
header, a number it sent) and never carry a stack trace.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

log = logging.getLogger("service")


class ServiceError(Exception):
    """Base class: an error with an HTTP status and a one-line message."""

    status_code = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(ServiceError):
    """The request cannot be parsed, or breaks the Open Inference Protocol."""

    status_code = 400


class Unauthorized(ServiceError):
    """A bearer token is required and was missing or wrong."""

    status_code = 401


class NotFound(ServiceError):
    """Unknown route, model name or model version."""

    status_code = 404


class PayloadTooLarge(ServiceError):
    """The body is over the configured limit."""

    status_code = 413


class UnsupportedMediaType(ServiceError):
    """The body is not declared as JSON."""

    status_code = 415


class InvalidInput(ServiceError):
    """Well-formed JSON that does not fit the model's input."""

    status_code = 422


class RequestTimeout(ServiceError):
    """The client took too long to send its headers or body."""

    status_code = 408


class HeadersTooLarge(ServiceError):
    """Too many header bytes or header fields."""

    status_code = 431


class NotReady(ServiceError):
    """The model has not finished loading."""

    status_code = 503


class Overloaded(ServiceError):
    """The worker already has its limit of requests in progress."""

    status_code = 503


def error_body(message: str) -> bytes:
    """The single error body shape, ``{"error": message}``, as bytes."""
    return json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error as a Starlette response."""
    return Response(error_body(message), status, headers, media_type="application/json")


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status_code, exc.message, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    # FastAPI's default is a 422 {"detail": [...]} that echoes the input. A path or
    # query parameter that does not validate breaks the route's protocol: 400.
    assert isinstance(exc, RequestValidationError)
    return error_response(BadRequest.status_code, _describe_validation(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "not found", 405: "method not allowed"}.get(exc.status_code)
    return error_response(exc.status_code, message or str(exc.detail), dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Never show the client a stack trace; log the type only (no payloads in logs).
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return error_response(500, "internal error")


def install_handlers(app: FastAPI) -> None:
    """Register the one error rendering for every kind of failure."""
    handlers: dict[Any, Any] = {
        ServiceError: _service_error,
        RequestValidationError: _validation_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
