"""Open Inference Protocol (KServe V2) REST routes.

Health answers 200 with a JSON body (``{"live": true}``) and 503 ``{"error": ...}``
when not ready, which suits both ``tritonclient.http`` (status only) and kserve's
``InferenceRESTClient`` (reads the body). Errors are ``{"error": ...}`` with the
statuses of the rule in ``service.errors`` (400 protocol, 404 model, 422 fit).
The binary tensor extension is accepted for inputs; outputs are always JSON,
which both clients decode when the response carries no
``Inference-Header-Content-Length``. Requests are parsed in ``service.oip_infer``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from bnfold.card import OUTPUTS
from service import __version__
from service.endpoints import Endpoints
from service.oip_infer import MODEL_DATATYPE, find_model
from service.predictor import Slot
from service.schemas import (
    ErrorBody,
    InferResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    ServerMetadata,
)

PLATFORM = "onnxruntime_onnx"
PREFIX = "/v2/models/{model_name}"
VERSIONED = f"{PREFIX}/versions/{{model_version}}"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Not JSON, or not an Open Inference Protocol request"),
        (401, "Missing or invalid token"),
        (404, "Unknown model or version"),
        (413, "Body too large"),
        (415, "Unsupported content type"),
        (422, "The request does not fit the model"),
        (503, "Model not loaded, or too many requests in progress"),
    )
}


def build_router(slot: Slot, endpoints: Endpoints) -> APIRouter:
    """All Open Inference Protocol routes, reading the model from ``slot``."""
    router = APIRouter(tags=["Open Inference Protocol (V2)"], responses=_ERRORS)

    @router.get("/v2", response_model=ServerMetadata)
    async def server_metadata() -> dict[str, Any]:
        return {"name": "bnfold", "version": __version__, "extensions": ["binary_tensor_data"]}

    @router.get("/v2/health/live", response_model=Live)
    async def server_live() -> dict[str, Any]:
        return {"live": True}

    @router.get("/v2/health/ready", response_model=Ready)
    async def server_ready() -> dict[str, Any]:
        slot.get()
        return {"ready": True}

    def describe(model_name: str, model_version: str | None) -> dict[str, Any]:
        predictor = find_model(slot, model_name, model_version)
        runtime = predictor.runtime
        classes = len(runtime.labels)
        return {
            "name": runtime.name,
            "versions": [runtime.version],
            "platform": PLATFORM,
            "inputs": [
                {
                    "name": runtime.input_name,
                    "datatype": MODEL_DATATYPE,
                    "shape": [-1, *runtime.sample_shape],
                }
            ],
            "outputs": [{"name": n, "datatype": "FP32", "shape": [-1, classes]} for n in OUTPUTS],
        }

    def ready(model_name: str, model_version: str | None) -> dict[str, Any]:
        return {"name": find_model(slot, model_name, model_version).runtime.name, "ready": True}

    async def infer(request: Request, model_name: str, model_version: str | None) -> Response:
        body = await endpoints.infer(request.headers, request.receive, model_name, model_version)
        return Response(body, media_type="application/json")

    # The same three operations with and without a version in the path (no query parameters).
    @router.get(PREFIX, response_model=ModelMetadata)
    async def model_metadata(model_name: str) -> dict[str, Any]:
        return describe(model_name, None)

    @router.get(VERSIONED, response_model=ModelMetadata)
    async def model_version_metadata(model_name: str, model_version: str) -> dict[str, Any]:
        return describe(model_name, model_version)

    @router.get(f"{PREFIX}/ready", response_model=ModelReady)
    async def model_ready(model_name: str) -> dict[str, Any]:
        return ready(model_name, None)

    @router.get(f"{VERSIONED}/ready", response_model=ModelReady)
    async def model_version_ready(model_name: str, model_version: str) -> dict[str, Any]:
        return ready(model_name, model_version)

    @router.post(f"{PREFIX}/infer", response_model=InferResponse)
    async def model_infer(request: Request, model_name: str) -> Response:
        return await infer(request, model_name, None)

    @router.post(f"{VERSIONED}/infer", response_model=InferResponse)
    async def model_version_infer(
        request: Request, model_name: str, model_version: str
    ) -> Response:
        return await infer(request, model_name, model_version)

    return router
