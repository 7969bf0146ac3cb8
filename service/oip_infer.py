"""Open Inference Protocol (KServe V2) infer requests and responses, without HTTP.

Statuses follow the rule in ``service.errors``: the protocol's own structure is
a 400 (the envelope's fields and their JSON types, a tensor's data against its
own shape, the binary extension's sizes), the fit to the served model a 422 (the
input's name, shape, batch size and datatype, float32 range, the output names).
No client value is ever quoted back.

When a request has several problems, the first one found is reported. Tensor
data are flat (row-major) or nested exactly as the declared shape; they are
walked level by level, never recursively, so any nesting costs one pass.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any

import numpy as np

from bnfold.card import OUTPUTS
from service.errors import BadRequest, InvalidInput, NotFound
from service.inputs import check_numbers, to_float32
from service.predictor import Predictor, Slot

# The protocol's datatypes; the model takes FP32 only (as its metadata says).
DATATYPES = frozenset(
    [
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
        "BF16",
    ]
)
MODEL_DATATYPE = "FP32"
# kserve's InferenceRESTClient also sends the model's name in the body (the path decides).
REQUEST_FIELDS = ("id", "model_name", "parameters", "inputs", "outputs")
TENSOR_FIELDS = ("name", "shape", "datatype", "parameters", "data")
OUTPUT_FIELDS = ("name", "parameters")
BINARY_SIZE = "binary_data_size"


def find_model(slot: Slot, name: str, version: str | None) -> Predictor:
    """The predictor serving model ``name`` (at ``version``, if given); 404 otherwise."""
    predictor = slot.get()
    served = predictor.runtime.name
    if name != served:
        raise NotFound(f"unknown model: this server serves {served!r}")
    if version is not None and version != predictor.version:
        raise NotFound(f"unknown version: model {served!r} is at version {predictor.version!r}")
    return predictor


def _fields(value: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    if not set(value).issubset(allowed):
        raise BadRequest(f"{what} has a field other than {', '.join(map(repr, allowed))}")


def _object(value: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    found = value.get(key, {})
    if type(found) is not dict:
        raise BadRequest(f"{what} 'parameters' must be an object")
    return found


def parse_infer(
    predictor: Predictor, payload: Any, binary: bytes | None
) -> tuple[np.ndarray, list[str], str | None]:
    """(batch, requested output names, request id) of an infer request.

    ``binary`` holds the bytes after the JSON header when the request uses the
    binary tensor extension, else None.
    """
    if type(payload) is not dict:
        raise BadRequest("the infer request must be a JSON object")
    _fields(payload, REQUEST_FIELDS, "the infer request")
    request_id = payload.get("id")
    if "id" in payload and type(request_id) is not str:
        raise BadRequest("'id' must be a string")
    if "model_name" in payload and type(payload["model_name"]) is not str:
        raise BadRequest("'model_name' must be a string")
    _object(payload, "parameters", "the request's")
    inputs = payload.get("inputs")
    if type(inputs) is not list or any(type(t) is not dict for t in inputs):
        raise BadRequest("'inputs' must be a list of tensor objects")
    wanted = _outputs(payload["outputs"]) if "outputs" in payload else None
    runtime = predictor.runtime
    if len(inputs) != 1:
        raise InvalidInput(f"the model takes exactly one input tensor, {runtime.input_name!r}")
    batch = _tensor(predictor, inputs[0], binary)
    if wanted is None or not wanted:
        wanted = list(OUTPUTS)
    return batch, wanted, request_id


def _tensor(predictor: Predictor, tensor: dict[str, Any], binary: bytes | None) -> np.ndarray:
    _fields(tensor, TENSOR_FIELDS, "the input tensor")
    for key in ("name", "shape", "datatype"):
        if key not in tensor:
            raise BadRequest(f"the input tensor is missing {key!r}")
    name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
    if type(name) is not str:
        raise BadRequest("the input tensor's 'name' must be a string")
    if type(shape) is not list or any(type(d) is not int or d < 0 for d in shape):
        raise BadRequest("the input tensor's 'shape' must be a list of non-negative integers")
    if type(datatype) is not str or datatype not in DATATYPES:
        raise BadRequest("the input tensor's 'datatype' must be an Open Inference Protocol type")
    params = _object(tensor, "parameters", "the input tensor's")
    if BINARY_SIZE in params and "data" in tensor:
        raise BadRequest(f"the input tensor has both 'data' and {BINARY_SIZE!r}")
    if BINARY_SIZE not in params and "data" not in tensor:
        raise BadRequest("the input tensor is missing 'data'")

    runtime, sample = predictor.runtime, predictor.runtime.sample_shape
    field = f"input {runtime.input_name!r}"
    if name != runtime.input_name:
        raise InvalidInput(f"unknown input name: the model's input is {runtime.input_name!r}")
    expected = f"[N, {', '.join(map(str, sample))}] with 1 <= N <= {predictor.max_batch}"
    if tuple(shape[1:]) != sample or len(shape) != 1 + len(sample):
        raise InvalidInput(f"{field}: shape must be {expected}")
    if not 1 <= shape[0] <= predictor.max_batch:
        raise InvalidInput(f"{field}: shape must be {expected}")
    if datatype != MODEL_DATATYPE:
        raise InvalidInput(f"{field}: datatype must be {MODEL_DATATYPE}, the model's input type")
    count = math.prod(shape)
    if BINARY_SIZE in params:
        values: Any = _binary(binary, params[BINARY_SIZE], count, field)
    else:
        if binary:
            raise BadRequest(f"{len(binary)} bytes of binary data belong to no tensor")
        values = _values(tensor["data"], shape, count, field)
    return to_float32(values, tuple(shape), field)


def _values(data: Any, shape: list[int], count: int, field: str) -> list[Any]:
    """The row-major values of flat or nested ``data`` (400 unless it fills ``shape``)."""
    if type(data) is not list:
        raise BadRequest(f"{field}: 'data' must be an array")
    if data and type(data[0]) is list:
        level: list[Any] = [data]
        for dim in shape:
            if any(type(item) is not list or len(item) != dim for item in level):
                raise BadRequest(f"{field}: nested 'data' must be nested exactly as its shape")
            level = list(chain.from_iterable(level))
        values = level
    else:
        values = data
    if len(values) != count:
        raise BadRequest(f"{field}: {len(values)} values do not fill its shape")
    check_numbers(values, f"{field} data", BadRequest)
    return values


def _binary(binary: bytes | None, size: Any, count: int, field: str) -> np.ndarray:
    if binary is None:
        raise BadRequest(
            f"{BINARY_SIZE!r} needs the binary tensor extension "
            "(an Inference-Header-Content-Length header)"
        )
    need = count * 4
    if type(size) is not int or size != need:
        raise BadRequest(f"{field}: {BINARY_SIZE} must be {need} bytes for its shape")
    if len(binary) != need:
        raise BadRequest(f"{field}: the body holds {len(binary)} bytes of binary data, not {need}")
    return np.frombuffer(binary, dtype="<f4", count=count)


def _outputs(requested: Any) -> list[str]:
    if type(requested) is not list or any(type(o) is not dict for o in requested):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    names = []
    for output in requested:
        _fields(output, OUTPUT_FIELDS, "a requested output")
        name = output.get("name")
        if type(name) is not str:
            raise BadRequest("a requested output's 'name' must be a string")
        _object(output, "parameters", "a requested output's")
        names.append(name)
    if not set(names).issubset(OUTPUTS):
        raise InvalidInput(f"unknown output name: the model has {list(OUTPUTS)}")
    return names


def infer_response(
    predictor: Predictor, batch: np.ndarray, wanted: list[str], request_id: str | None
) -> dict[str, Any]:
    """Run ``batch`` and build the infer response (outputs always as JSON data)."""
    logits, probs = predictor.run(batch)
    tensors = dict(zip(OUTPUTS, (logits, probs), strict=True))
    body: dict[str, Any] = {
        "model_name": predictor.runtime.name,
        "model_version": predictor.version,
    }
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = [
        {
            "name": name,
            "datatype": "FP32",
            "shape": list(tensors[name].shape),
            "data": tensors[name].ravel().tolist(),
        }
        for name in wanted
    ]
    return body
