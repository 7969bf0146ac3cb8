"""``POST /predict`` answered at the ASGI level, in front of FastAPI's router.

Measured on one pinned core: FastAPI's routing, ``Request`` object and
dependency machinery cost more than the whole model path (JSON parsing,
validation, ONNX Runtime, encoding), about halving throughput. This middleware
answers exactly ``POST /predict`` with the same functions the FastAPI route
uses (which stays registered for the OpenAPI docs and as the fallback) and
passes everything else on. Errors render exactly as the one handler does.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.body import read_sample
from service.errors import ServiceError
from service.jsonio import dumps
from service.predictor import Slot

_JSON_HEADER = (b"content-type", b"application/json")


class PredictFastPath:
    """Serves ``POST /predict`` directly; ``route`` labels it for the metrics middleware."""

    def __init__(self, app: ASGIApp, slot: Slot, limit: int, route: object) -> None:
        self.app = app
        self.slot = slot
        self.limit = limit
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        headers: list[tuple[bytes, bytes]] = [_JSON_HEADER]
        try:
            predictor = self.slot.get()
            sample = await read_sample(Headers(raw=scope["headers"]), receive, self.limit)
            body = predictor.predict(sample)
            status = 200
        except ServiceError as exc:
            body = dumps({"error": exc.message})
            status = exc.status_code
            headers.extend((k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items())
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
