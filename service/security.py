"""Optional bearer-token check, as pure ASGI middleware (installed only when API_TOKEN is set)."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Unauthorized, error_response

# Probes must work without credentials (Kubernetes, Docker HEALTHCHECK).
PUBLIC_PATHS = frozenset(("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"))


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
        self.expected = f"Bearer {token}".encode()
        self.public = public
        self.public_prefixes = public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.public or path.startswith(self.public_prefixes):
            await self.app(scope, receive, send)
            return
        given = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                given = value
                break
        if not hmac.compare_digest(given, self.expected):
            response = error_response(
                Unauthorized.status_code,
                "missing or invalid bearer token",
                {"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
