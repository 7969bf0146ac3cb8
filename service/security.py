"""Optional bearer-token check, as pure ASGI middleware (installed only when API_TOKEN is set)."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Unauthorized, error_response
from service.paths import PROBE_PATHS, route_path

PUBLIC_PATHS = PROBE_PATHS  # the only routes without a token


def bearer_token(value: bytes) -> bytes | None:
    """The credentials of an ``Authorization`` value whose scheme is Bearer (RFC 7235: the
    scheme is case-insensitive and followed by one or more spaces), else None."""
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.lstrip(b" ")


class TokenGuard:
    """Answers 401 unless ``Authorization: Bearer <token>`` matches, compared in constant time.

    ``public`` paths (exact) and ``public_prefixes`` pass without it: the probes, and the
    browser pages and their files (``service.ui.public_paths``).
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        public: frozenset[str] = PUBLIC_PATHS,
        public_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.expected = token.encode()
        self.public = public
        self.public_prefixes = public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in self.public or path.startswith(self.public_prefixes):
            await self.app(scope, receive, send)
            return
        given = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                given = bearer_token(value)
                break
        if given is None or not hmac.compare_digest(given, self.expected):
            response = error_response(
                Unauthorized.status_code,
                "missing or invalid bearer token",
                {"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
