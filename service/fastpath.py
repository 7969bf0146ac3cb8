"""The POST routes answered at the ASGI level, in front of FastAPI's router.

Measured on one pinned core: FastAPI's routing, ``Request`` object and
dependency machinery cost more than the whole model path (JSON parsing,
validation, ONNX Runtime, encoding), about halving throughput. This middleware
answers ``POST /predict``, ``/predict/batch`` and the V2 infer routes with the
very functions the FastAPI routes call (``service.endpoints``; the routes stay
registered for the OpenAPI docs), matches paths as Starlette does (without the
application's ``root_path``) and passes everything else on. Errors render as the
one handler renders them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.endpoints import Endpoints
from service.errors import ServiceError, error_body
from service.paths import route_path

_JSON_HEADER = (b"content-type", b"application/json")
_V2, _INFER = "/v2/models/", "/infer"


@dataclass(frozen=True)
class RouteLabel:
    """What ``scope["route"]`` carries for the metrics: the route's path template."""

    path: str


class FastPath:
    """Serves the POST data routes directly, labelled as their FastAPI routes are."""

    def __init__(self, app: ASGIApp, endpoints: Endpoints) -> None:
        self.app = app
        self.endpoints = endpoints
        self.predict = RouteLabel("/predict")
        self.batch = RouteLabel("/predict/batch")
        self.infer = RouteLabel(f"{_V2}{{model_name}}{_INFER}")
        self.infer_version = RouteLabel(f"{_V2}{{model_name}}/versions/{{model_version}}{_INFER}")

    def _match(
        self, path: str, headers: Headers, receive: Receive
    ) -> tuple[Any, Awaitable[bytes]] | None:
        endpoints = self.endpoints
        if path == "/predict":
            return self.predict, endpoints.predict(headers, receive)
        if path == "/predict/batch":
            return self.batch, endpoints.predict_batch(headers, receive)
        if path.startswith(_V2) and path.endswith(_INFER):
            parts = path[len(_V2) : -len(_INFER)].split("/")
            if len(parts) == 1 and parts[0]:
                return self.infer, endpoints.infer(headers, receive, parts[0], None)
            if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
                return self.infer_version, endpoints.infer(headers, receive, parts[0], parts[2])
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        found = self._match(route_path(scope), Headers(raw=scope["headers"]), receive)
        if found is None:
            await self.app(scope, receive, send)
            return
        scope["route"], work = found
        headers: list[tuple[bytes, bytes]] = [_JSON_HEADER]
        try:
            body = await work
            status = 200
        except ServiceError as exc:
            body = error_body(exc.message)
            status = exc.status_code
            headers.extend((k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items())
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
