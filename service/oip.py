"""Open Inference Protocol (KServe V2) REST routes.

Health answers 200 with a JSON body (``{"live": true}``) and 503 ``{"error": ...}``
when not ready, which suits both ``tritonclient.http`` (status only) and kserve's
``InferenceRESTClient`` (reads the body). Errors are 400/404/503 ``{"error": ...}``.
The binary tensor extension is accepted for inputs; outputs are always JSON, which
both clients decode when the response carries no ``Inference-Header-Content-Length``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from bnfold.card import OUTPUTS
from service import __version__
from service.body import read_inference
from service.errors import BadRequest, InvalidInput, NotFound
from service.inputs import check_numbers, quote, to_float32
from service.jsonio import dumps
from service.predictor import Predictor, Slot
from service.schemas import (
    DATATYPES,
    ErrorBody,
    InferResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    ServerMetadata,
)

PLATFORM = "onnxruntime_onnx"
_PREFIXES = ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Invalid request"),
        (401, "Missing or invalid token"),
        (404, "Unknown model or version"),
        (413, "Body too large"),
        (415, "Unsupported content type"),
        (503, "Model not loaded"),
    )
}


def _model(slot: Slot, name: str, version: str | None) -> Predictor:
    predictor = slot.get()
    if name != predictor.runtime.name:
        raise NotFound(
            f"unknown model {quote(name)}: this server serves {predictor.runtime.name!r}"
        )
    if version is not None and version != predictor.version:
        raise NotFound(
            f"model {name!r} has no version {quote(version)} (serving {predictor.version!r})"
        )
    return predictor


def _flatten(data: list[Any]) -> list[Any]:
    if not data or type(data[0]) is not list:
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if type(item) is list else [item])
    return flat


def parse_infer(predictor: Predictor, payload: Any, binary: bytes) -> tuple[np.ndarray, list[str]]:
    """An infer request -> (batch, requested output names); ``BadRequest`` on any mismatch."""
    if type(payload) is not dict:
        raise BadRequest("the infer request must be a JSON object")
    inputs = payload.get("inputs")
    runtime = predictor.runtime
    sample = runtime.sample_shape
    if type(inputs) is not list or len(inputs) != 1 or type(inputs[0]) is not dict:
        raise BadRequest(f"'inputs' must hold exactly one tensor, {runtime.input_name!r}")
    tensor = inputs[0]
    missing = [k for k in ("name", "shape", "datatype") if k not in tensor]
    if missing:
        raise BadRequest(f"input tensor is missing {missing[0]!r}")
    if tensor["name"] != runtime.input_name:
        raise BadRequest(f"unknown input {quote(tensor['name'])}: expected {runtime.input_name!r}")
    field = f"input {runtime.input_name!r}"
    expected = f"[N, {', '.join(map(str, sample))}] with 1 <= N <= {predictor.max_batch}"
    shape = tensor["shape"]
    if (
        type(shape) is not list
        or len(shape) != 1 + len(sample)
        or any(type(d) is not int for d in shape)
        or tuple(shape[1:]) != sample
        or not 1 <= shape[0] <= predictor.max_batch
    ):
        raise BadRequest(f"{field}: shape must be {expected}")
    dtype = DATATYPES.get(tensor["datatype"]) if type(tensor["datatype"]) is str else None
    if dtype is None:
        raise BadRequest(f"{field}: datatype must be one of {', '.join(DATATYPES)}")
    count = shape[0] * int(np.prod(sample))
    params = tensor.get("parameters") or {}
    try:
        if type(params) is dict and "binary_data_size" in params:
            values: Any = _binary(binary, params["binary_data_size"], dtype, count, field)
        else:
            data = tensor.get("data")
            if type(data) is not list:
                raise BadRequest(f"{field}: 'data' must be a list of {count} numbers")
            values = _flatten(data)
            if len(values) != count:
                raise BadRequest(f"{field}: {len(values)} values do not fill shape {expected}")
            check_numbers(values, f"{field} data")
        batch = to_float32(values, (shape[0], *sample), field)
    except InvalidInput as exc:
        raise BadRequest(exc.message) from None
    return batch, _outputs(payload.get("outputs"))


def _binary(binary: bytes, size: Any, dtype: str, count: int, field: str) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    if type(size) is not int or size != count * itemsize or size > len(binary):
        raise BadRequest(
            f"{field}: binary_data_size must be {count * itemsize} bytes, "
            f"the body holds {len(binary)}"
        )
    return np.frombuffer(binary, dtype=dtype, count=count)


def _outputs(requested: Any) -> list[str]:
    known = list(OUTPUTS)
    if requested is None:
        return known
    if type(requested) is not list or any(type(o) is not dict for o in requested):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    chosen = [o.get("name") for o in requested]
    for name in chosen:
        if name not in known:
            raise BadRequest(f"unknown output {quote(name)}: the model has {known}")
    return chosen or known


def build_router(slot: Slot, body_limit: int) -> APIRouter:
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

    async def metadata(model_name: str, model_version: str | None = None) -> dict[str, Any]:
        predictor = _model(slot, model_name, model_version)
        runtime = predictor.runtime
        classes = len(runtime.labels)
        return {
            "name": runtime.name,
            "versions": [runtime.version],
            "platform": PLATFORM,
            "inputs": [
                {
                    "name": runtime.input_name,
                    "datatype": "FP32",
                    "shape": [-1, *runtime.sample_shape],
                }
            ],
            "outputs": [{"name": n, "datatype": "FP32", "shape": [-1, classes]} for n in OUTPUTS],
        }

    async def model_ready(model_name: str, model_version: str | None = None) -> dict[str, Any]:
        return {"name": _model(slot, model_name, model_version).runtime.name, "ready": True}

    async def infer(
        request: Request, model_name: str, model_version: str | None = None
    ) -> Response:
        predictor = _model(slot, model_name, model_version)
        payload, binary = await read_inference(request.headers, request.receive, body_limit)
        batch, wanted = parse_infer(predictor, payload, binary)
        request_id = payload.get("id")
        if request_id is not None and type(request_id) is not str:
            raise BadRequest("'id' must be a string")
        try:
            logits, probs = predictor.run(batch)
        except InvalidInput as exc:
            raise BadRequest(exc.message) from None
        tensors = dict(zip(OUTPUTS, (logits, probs), strict=True))
        body: dict[str, Any] = {
            "model_name": predictor.runtime.name,
            "model_version": predictor.version,
        }
        if request_id is not None:
            body["id"] = request_id
        body["outputs"] = [
            {
                "name": n,
                "datatype": "FP32",
                "shape": list(tensors[n].shape),
                "data": tensors[n].ravel().tolist(),
            }
            for n in wanted
        ]
        return Response(dumps(body), media_type="application/json")

    for prefix in _PREFIXES:
        router.add_api_route(prefix, metadata, methods=["GET"], response_model=ModelMetadata)
        router.add_api_route(
            f"{prefix}/ready", model_ready, methods=["GET"], response_model=ModelReady
        )
        router.add_api_route(
            f"{prefix}/infer", infer, methods=["POST"], response_model=InferResponse
        )
    return router
