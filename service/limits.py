"""Per-request limits, as pure ASGI middleware in front of every route (and of the token check).

* more than ``max_headers`` header fields: 431 (the header *bytes* are capped
  earlier, while they are read: ``service.protocol``);
* more than ``max_concurrency`` requests in progress in this worker: 503 with
  ``Retry-After``, except for the health probes, which are cheap, read no body and
  must keep answering while the limit is reached (Kubernetes would otherwise
  restart a pod that is merely busy).

Bodies are bounded by MAX_BODY_BYTES, so the requests in progress hold at most
``max_concurrency`` x MAX_BODY_BYTES of body between them. ``BACKOFF`` names the scope
extension through which ``service.protocol`` hears of every 4xx (reported by
``service.metrics``, which watches every response anyway).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import HeadersTooLarge, Overloaded, error_response
from service.paths import PROBE_PATHS, route_path

# The ASGI scope extension of service.protocol: {"report": callable(seconds)} for a 4xx.
BACKOFF = "bnfold.backoff"


class RequestLimits:
    """Counts the requests in progress and refuses what is over the limits."""

    def __init__(self, app: ASGIApp, max_headers: int, max_concurrency: int) -> None:
        self.app = app
        self.max_headers = max_headers
        self.max_concurrency = max_concurrency
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope["headers"]) > self.max_headers:
            response = error_response(
                HeadersTooLarge.status_code,
                f"the request has more than {self.max_headers} header fields",
                {"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        if self.in_progress >= self.max_concurrency and route_path(scope) not in PROBE_PATHS:
            response = error_response(
                Overloaded.status_code,
                f"the server already has {self.max_concurrency} requests in progress; retry later",
                {"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1
