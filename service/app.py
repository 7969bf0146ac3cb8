"""The FastAPI application: ``create_app(settings)``, whose lifespan loads the model.

The request path is kept short on purpose: ``POST /predict`` is answered by an
ASGI fast path (``service.fastpath``) that parses the body with orjson,
validates it against the card in plain Python (``service.inputs``), calls ONNX
Runtime inline on the event loop (a small model runs in tens of microseconds,
less than a hop to a thread pool) and sends pre-encoded bytes. The routes below
stay registered, so that the OpenAPI schema documents every body with examples
taken from the served model, and answer when the app runs under a path prefix.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from service import __version__, schemas
from service.endpoints import Endpoints
from service.errors import install_handlers
from service.fastpath import FastPath
from service.limits import RequestLimits
from service.metrics import CONTENT_TYPE_LATEST, Metrics, MetricsMiddleware
from service.monitor import build_monitor
from service.monitor_metrics import MonitorCollector
from service.monitor_report import build_monitor_router
from service.oip import build_router
from service.predictor import Predictor, Slot
from service.reload import Reloader, runtime_loader
from service.runtime import ModelRuntime
from service.settings import Settings
from service.ui import install_ui, public_paths

log = logging.getLogger("service")

_JSON = "application/json"
# FastAPI >= 0.16x instruments every request for OpenTelemetry unless told not to.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        401: "Missing or invalid token",
        400: "Not JSON (malformed, NaN/Infinity, too deep), or a malformed header",
        413: "Body too large",
        415: "Unsupported Content-Type, or not a PNG/JPEG file",
        422: "The body does not fit the model",
        503: "Model not loaded, or too many requests in progress",
    }
    return {c: {"model": schemas.ErrorBody, "description": text[c]} for c in codes}


def create_app(settings: Settings, runtime: ModelRuntime | None = None) -> FastAPI:
    """Build the app. Its lifespan loads ``settings.model_path`` unless ``runtime`` is given.

    Loading failures raise ``ModelLoadError`` out of the lifespan: the server never
    starts serving a model that disagrees with its card. Once serving, SIGHUP (and
    MODEL_POLL_SECONDS) reload the file without downtime (``service.reload``;
    ``app.state.reloader``).
    """
    slot = Slot()
    metrics = Metrics()
    endpoints = Endpoints(slot, settings.max_body_bytes)

    def predictor_for(loaded: ModelRuntime) -> Predictor:
        return Predictor(
            loaded,
            settings.max_batch_size,
            metrics.observe_inference,
            build_monitor(
                loaded.card,
                enabled=settings.monitor,
                window=settings.monitor_window,
                share=settings.monitor_share,
            ),
            reject_out_of_range=settings.out_of_range == "reject",
        )

    def swapped() -> None:
        app.openapi_schema = None  # rebuild the docs with this model's examples

    reloader = Reloader(
        slot,
        metrics,
        settings.model_path,
        runtime_loader(settings.model_options(), predictor_for),
        swapped,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = runtime or ModelRuntime.load(**settings.model_options())
        reloader.install(predictor_for(loaded))
        log.info(
            "serving model %r version %s (loaded and checked in %.3f s)",
            loaded.name,
            loaded.version,
            loaded.load_seconds,
        )
        reloader.start(settings.model_poll_seconds)
        yield
        await reloader.close()
        slot.predictor = None

    app = FastAPI(
        title="bnfold prediction service",
        version=__version__,
        description="Single-sample predictions from a BatchNorm-folded ONNX model.",
        lifespan=lifespan,
        docs_url=None,  # service.ui serves /docs with Swagger UI's files from this service
        redoc_url=None,
        **_NO_TELEMETRY,  # it looked up global providers on every request
    )
    install_handlers(app)

    @app.post(
        "/predict",
        response_model=schemas.PredictResponse,
        tags=["Predict"],
        responses=_errors(400, 401, 413, 415, 422, 503),
    )
    async def predict(request: Request) -> Response:
        """Predict one sample, in the shape the model card declares, or one image file
        (``image/png``, ``image/jpeg``, ``multipart/form-data``) for a model whose card says
        how to decode files."""
        return Response(await endpoints.predict(request.headers, request.receive), media_type=_JSON)

    @app.post(
        "/predict/batch",
        response_model=schemas.BatchResponse,
        tags=["Predict"],
        responses=_errors(400, 401, 413, 415, 422, 503),
    )
    async def predict_batch(request: Request) -> Response:
        """Predict up to MAX_BATCH_SIZE samples; each equals ``/predict`` on it alone."""
        body = await endpoints.predict_batch(request.headers, request.receive)
        return Response(body, media_type=_JSON)

    @app.get(
        "/model", response_model=schemas.ModelInfo, tags=["Model"], responses=_errors(401, 503)
    )
    async def model() -> dict[str, Any]:
        """The model card (without golden samples), the fold report and the startup checks."""
        current = slot.get().runtime
        card = current.card.public()
        return {
            "model_version": current.version,
            "card": card,
            "fold_report": card["fold"],
            "checks": current.checks,
        }

    @app.get("/health/live", response_model=schemas.Live, tags=["Health"])
    async def live() -> dict[str, bool]:
        """The process is up."""
        return {"live": True}

    @app.get("/health/ready", response_model=schemas.Ready, tags=["Health"], responses=_errors(503))
    async def ready() -> dict[str, bool]:
        """The model is loaded and passed its checks."""
        slot.get()
        return {"ready": True}

    @app.get(
        "/metrics",
        tags=["Health"],
        response_class=Response,
        responses={
            200: {
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                "description": "Prometheus text format",
            },
            **_errors(401),
        },
    )
    async def prometheus() -> Response:
        """Prometheus metrics of this worker."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(build_router(slot, endpoints))
    app.include_router(build_monitor_router(slot, settings.monitor), responses=_errors(401, 503))
    metrics.registry.register(MonitorCollector(slot))
    # Added last = outermost: metrics, limits, CORS, token, then the fast path. The limits
    # come before anything that reads a header value (CORS, the token) or routes.
    app.add_middleware(FastPath, endpoints=endpoints)
    if settings.api_token:
        from service.security import TokenGuard

        public, prefixes = public_paths(settings)  # probes, pages, their files (, schema)
        app.add_middleware(
            TokenGuard, token=settings.api_token, public=public, public_prefixes=prefixes
        )
    if settings.cors_origin_list:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(
        RequestLimits,
        max_headers=settings.max_headers,
        max_concurrency=settings.max_concurrency,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            if slot.predictor is not None:
                _document_bodies(app.openapi_schema, slot.predictor, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    install_ui(app, settings, slot)
    app.state.slot = slot
    app.state.metrics = metrics
    app.state.reloader = reloader
    return app


def _document_bodies(spec: dict[str, Any], predictor: Predictor, settings: Settings) -> None:
    """Fill in the request bodies, derived from the served model's card."""
    card = predictor.runtime.card
    limit = settings.max_batch_size
    examples = {
        "golden": {
            "summary": card.golden[0].note if card.golden else "sample",
            "value": schemas.sample_example(card),
        }
    }
    named = schemas.named_example(card)
    if named is not None:
        examples["by_name"] = {"summary": "features by name", "value": named}
    batch_value = {
        "samples": [schemas.sample_example(card, i) for i in range(min(2, len(card.golden)))]
    }
    bodies = {
        "/predict": (schemas.sample_schema(card), examples),
        "/predict/batch": (
            schemas.batch_schema(card, limit),
            {"two": {"summary": "two samples", "value": batch_value}},
        ),
    }
    infer = (
        schemas.infer_schema(card, limit),
        {"golden": {"summary": "one sample", "value": schemas.infer_example(card)}},
    )
    # The model name and version in V2 paths: only the served ones exist (others are 404).
    served = {"model_name": card.name, "model_version": card.version}
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") in served:
                    parameter["schema"] = {"type": "string", "enum": [served[parameter["name"]]]}
        body = bodies.get(path, infer if path.endswith("/infer") else None)
        if body is None or "post" not in item:
            continue
        schema, example = body
        content = {_JSON: {"schema": schema, "examples": example}}
        if path == "/predict":
            content |= schemas.upload_content(card)
        item["post"]["requestBody"] = {"required": True, "content": content}


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers (``service.app:app_from_env``): settings from the environment."""
    settings = Settings()  # type: ignore[call-arg]  # MODEL_PATH comes from the environment
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return create_app(settings)
