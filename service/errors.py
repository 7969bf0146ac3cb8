"""The service's errors and the one handler that renders them.

Every error a client can cause is a ``ServiceError`` carrying its HTTP status::

    ServiceError (500)
    ├── BadRequest (400)            malformed JSON, bad Open Inference Protocol request
    ├── Unauthorized (401)          missing or wrong bearer token
    ├── NotFound (404)              unknown route, model name or version
    ├── PayloadTooLarge (413)       body over MAX_BODY_BYTES (checked before reading)
    ├── UnsupportedMediaType (415)  content type other than application/json
    ├── InvalidInput (422)          wrong shape, names, types, non-finite values, batch limit
    └── NotReady (503)              the model is not loaded (yet)

Starlette's own 404/405 and FastAPI's validation errors (400 on ``/v2``, else 422)
render the same way. Responses are always ``{"error": "<one line>"}``. Messages
name the field and the expected shape; they never echo the input and never carry
a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

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


class NotReady(ServiceError):
    """The model has not finished loading."""

    status_code = 503


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The single error body shape: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


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
    # FastAPI's default 422 body is {"detail": [...]} and echoes the input; the
    # Open Inference Protocol clients expect {"error": ...} and a 400.
    assert isinstance(exc, RequestValidationError)
    status = 400 if request.url.path.startswith("/v2") else 422
    return error_response(status, _describe_validation(exc))


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
