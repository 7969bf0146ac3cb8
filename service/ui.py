"""What a person opens in a browser: the demo page (``/``), the API docs (``/docs``), the human
model card (``/model/card.md``) and the files they load, all served by the service itself.

Nothing comes from a CDN: the pages and their scripts are plain files in ``service/static``
and Swagger UI's files come from the ``fastapi-offline`` package, so the pages work offline
and in an air-gapped cluster. A Content-Security-Policy of ``'self'`` makes the browser refuse
anything else. The pages call the public API like any client; with ``API_TOKEN`` set they ask
for the token. The page shells and their files hold no model data and are always public; the
schema follows ``DOCS_ACCESS`` (``public``, or ``token``: behind the bearer token like the API).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from bnfold.card_markdown import MEDIA_TYPE, card_markdown
from service.predictor import Slot
from service.settings import Settings

__all__ = ["ASSET_PREFIX", "SCHEMA_PATH", "SECURITY_SCHEME", "install_ui", "public_paths"]

STATIC = Path(__file__).with_name("static")
SWAGGER = Path(str(resources.files("fastapi_offline") / "static"))
ASSET_PREFIX = "/static/"
SCHEMA_PATH = "/openapi.json"
PAGES = {"/": "index.html", "/docs": "docs.html"}
SECURITY_SCHEME = "bearerAuth"
# Every page loads its scripts, styles and images from this origin only; data: covers the
# icons Swagger UI inlines in its stylesheet.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def public_paths(settings: Settings) -> tuple[frozenset[str], tuple[str, ...]]:
    """The paths (exact, and prefixes) the bearer token does not guard: the health probes, the
    page shells and their files, and the schema unless ``DOCS_ACCESS=token``."""
    from service.security import PUBLIC_PATHS

    exact = set(PUBLIC_PATHS) | set(PAGES)
    if settings.docs_access == "public":
        exact.add(SCHEMA_PATH)
    return frozenset(exact), (ASSET_PREFIX,)


def install_ui(app: FastAPI, settings: Settings, slot: Slot) -> None:
    """Add the pages, their files and ``/model/card.md`` to ``app``, and declare the bearer
    token in its OpenAPI document when ``API_TOKEN`` is set (Swagger's "Authorize")."""

    def page(name: str) -> Callable[[], Any]:
        async def serve() -> Response:
            return FileResponse(STATIC / name, media_type="text/html", headers=_PAGE_HEADERS)

        return serve

    for path, name in PAGES.items():
        app.add_api_route(path, page(name), methods=["GET"], include_in_schema=False)

    @app.get(
        "/model/card.md",
        tags=["Model"],
        summary="Model card (Markdown)",
        response_class=Response,
        responses={
            200: {
                "content": {"text/markdown": {"schema": {"type": "string"}}},
                "description": "The model card for people (also written at export as card.md)",
            }
        },
    )
    async def card_page() -> Response:
        """The model card as Markdown: what the model is, labels, data, metrics (EMA vs exact
        statistics), the fold report and its known limitations."""
        return Response(card_markdown(slot.get().runtime.card), media_type=MEDIA_TYPE)

    app.mount(ASSET_PREFIX + "ui", StaticFiles(directory=STATIC), name="ui-static")
    app.mount(ASSET_PREFIX + "swagger", StaticFiles(directory=SWAGGER), name="swagger-static")
    if settings.api_token:
        _declare_bearer(app)


def _declare_bearer(app: FastAPI) -> None:
    from service.security import PUBLIC_PATHS

    build = app.openapi

    def openapi() -> dict[str, Any]:
        spec = build()
        components = spec.setdefault("components", {})
        schemes = components.setdefault("securitySchemes", {})
        if SECURITY_SCHEME not in schemes:
            schemes[SECURITY_SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "description": "The service's API_TOKEN",
            }
            spec["security"] = [{SECURITY_SCHEME: []}]
            for path in PUBLIC_PATHS & set(spec.get("paths", {})):
                for operation in spec["paths"][path].values():
                    operation["security"] = []
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
