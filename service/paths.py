"""Paths as the middlewares see them: the health probes, and the path Starlette routes on."""

from __future__ import annotations

from starlette.types import Scope

# Probes must work without credentials (Kubernetes, Docker HEALTHCHECK) and under load.
PROBE_PATHS = frozenset(("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"))


def route_path(scope: Scope) -> str:
    """``path`` without the application's ``root_path`` prefix, as Starlette routes it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path
