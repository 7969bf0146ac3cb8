"""Response models and model-derived request schemas (for the OpenAPI docs).

Request bodies are parsed by hand on the hot path (``service.inputs``); the
schemas below document them precisely, with examples taken from the served
model's own golden samples.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from bnfold.card import FLOAT32_MAX, OUTPUTS, CategoricalFeature, ModelCard, NumericFeature


class PredictResponse(BaseModel):
    """One sample's prediction."""

    label: str = Field(description="The predicted class label.")
    class_index: int = Field(description="Index of the label in the card's labels.")
    probabilities: dict[str, float] = Field(description="Softmax probability of each label.")
    model_version: str = Field(description="The model version: its digest's first 12 hex digits.")
    warnings: list[str] | None = Field(
        default=None,
        description="Only when the input is outside the training range (OUT_OF_RANGE=warn): "
        "which feature or channel, and the range; the prediction may not be reliable.",
    )


class BatchResponse(BaseModel):
    """One prediction per sample, in order; each equals ``/predict`` for that sample alone."""

    predictions: list[PredictResponse]


class ErrorBody(BaseModel):
    """Every error: one line naming the field at fault."""

    error: str


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ModelInfo(BaseModel):
    """The card without golden samples, the fold report and the startup checks."""

    model_version: str
    card: dict[str, Any]
    fold_report: dict[str, Any]
    checks: dict[str, Any]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


def _number() -> dict[str, Any]:
    return {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}


def _nested(shape: tuple[int, ...]) -> dict[str, Any]:
    if not shape:
        return _number()
    return {
        "type": "array",
        "items": _nested(shape[1:]),
        "minItems": shape[0],
        "maxItems": shape[0],
    }


def _feature_schema(feature: NumericFeature | CategoricalFeature) -> dict[str, Any]:
    value: dict[str, Any]
    if isinstance(feature, CategoricalFeature):
        value = {"type": "string", "enum": list(feature.categories)}
    else:
        value = _number()
    if feature.fill is not None:  # null takes the card's fill
        value = {"anyOf": [value, {"type": "null"}]}
    return value


def _tabular_schema(card: ModelCard) -> dict[str, Any]:
    tabular = card.input.tabular
    assert tabular is not None  # the card's validator: a tabular input has its spec
    names = [f.name for f in tabular.features]
    fields = [_feature_schema(f) for f in tabular.features]
    as_list: dict[str, Any] = {
        "type": "array",
        "prefixItems": fields,
        "items": False,
        "minItems": len(fields),
        "maxItems": len(fields),
    }
    if all(f == _number() for f in fields):
        as_list = _nested((len(fields),))
    named = {
        "type": "object",
        "properties": dict(zip(names, fields, strict=True)),
        "required": names,
        "additionalProperties": False,
    }
    return {
        "anyOf": [as_list, named],
        "description": f"{card.input.description}; raw feature values in the order {names} "
        "(categories as strings, null where the card has a fill), or by name.",
    }


def sample_schema(card: ModelCard) -> dict[str, Any]:
    """JSON schema of one JSON ``/predict`` body for this model: exactly what the server accepts."""
    spec = card.input
    if spec.kind == "image":
        value: dict[str, Any] = _nested(spec.grid)
        if len(spec.grid) < len(spec.sample_shape):  # one channel: [C=1][H][W] also accepted
            value = {"anyOf": [value, _nested(spec.sample_shape)]}
        value["description"] = f"{spec.description}; nested as {list(spec.grid)}."
        key = "image"
    else:
        value = _tabular_schema(card)
        key = "features"
    return {
        "type": "object",
        "properties": {key: value},
        "required": [key],
        "additionalProperties": False,
    }


def upload_content(card: ModelCard) -> dict[str, Any]:
    """The image-file bodies ``/predict`` takes, when the card says how to decode files."""
    image = card.input.image
    if image is None or image.files is None:
        return {}
    binary = {"type": "string", "format": "binary"}
    note = (
        f"a PNG or JPEG file, decoded as training decoded its files (Pillow mode "
        f"{image.files.mode}, {image.files.resize or 'no'} resize to {image.width}x{image.height}, "
        f"pixel x {image.files.scale:.6g}; at most {image.files.max_pixels} pixels)"
    )
    return {
        "image/png": {"schema": {**binary, "description": note}},
        "image/jpeg": {"schema": {**binary, "description": note}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {**binary, "description": note}},
                "required": ["file"],
                "description": "exactly one file field (any name)",
            }
        },
    }


def raw_row(card: ModelCard, flat: list[float]) -> list[Any]:
    """A tabular tensor row as raw feature values (a one-hot slice -> its largest category)."""
    tabular = card.input.tabular
    assert tabular is not None
    row: list[Any] = []
    offset = 0
    for feature in tabular.features:
        if isinstance(feature, CategoricalFeature):
            width = len(feature.categories)
            part = flat[offset : offset + width]
            row.append(feature.categories[max(range(width), key=part.__getitem__)])
            offset += width
        else:
            row.append(flat[offset])
            offset += 1
    return row


def sample_example(card: ModelCard, index: int = 0) -> dict[str, Any]:
    """A real sample (a golden one) as a ``/predict`` body."""
    flat = card.golden[index].input if card.golden else [0.0] * card.input.size
    if card.input.kind == "image":
        return {"image": _reshape(flat, card.input.grid)}
    return {"features": raw_row(card, list(flat))}


def named_example(card: ModelCard) -> dict[str, Any] | None:
    """The first golden sample by feature name (tabular models)."""
    tabular = card.input.tabular
    if tabular is None:
        return None
    names = [f.name for f in tabular.features]
    return {"features": dict(zip(names, sample_example(card)["features"], strict=True))}


def batch_schema(card: ModelCard, limit: int) -> dict[str, Any]:
    """JSON schema of a ``/predict/batch`` body."""
    return {
        "type": "object",
        "properties": {
            "samples": {
                "type": "array",
                "items": sample_schema(card),
                "minItems": 1,
                "maxItems": limit,
            }
        },
        "required": ["samples"],
        "additionalProperties": False,
    }


def infer_schema(card: ModelCard, limit: int) -> dict[str, Any]:
    """JSON schema of an Open Inference Protocol infer request that this model accepts.

    Exact, as the server checks it (``service.oip_infer``): one FP32 tensor named as
    the card's input, one branch per batch size N (its shape, and its data flat or
    nested as that shape), no binary-extension parameter in a plain JSON request.
    """
    sample = list(card.input.sample_shape)
    size = card.input.size
    parameters: dict[str, Any] = {"type": "object", "not": {"required": ["binary_data_size"]}}
    tensors = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [card.input.name]},
                "shape": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "const": [n, *sample],
                },
                "datatype": {"type": "string", "enum": ["FP32"]},
                "data": {
                    "anyOf": [
                        {
                            "type": "array",
                            "items": _number(),
                            "minItems": n * size,
                            "maxItems": n * size,
                        },
                        _nested((n, *card.input.sample_shape)),
                    ],
                    "description": "Row-major values, flat or nested as the shape.",
                },
                "parameters": parameters,
            },
            "required": ["name", "shape", "datatype", "data"],
            "additionalProperties": False,
        }
        for n in range(1, limit + 1)
    ]
    output = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": list(OUTPUTS)},
            "parameters": {"type": "object"},
        },
        "required": ["name"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "model_name": {"type": "string", "description": "Ignored: the path names the model."},
            "parameters": {"type": "object"},
            "inputs": {
                "type": "array",
                "items": {"anyOf": tensors},
                "minItems": 1,
                "maxItems": 1,
                "description": f"One tensor of shape [N, {', '.join(map(str, sample))}], "
                f"1 <= N <= {limit}.",
            },
            "outputs": {"type": "array", "items": output},
        },
        "required": ["inputs"],
        "additionalProperties": False,
    }


def infer_example(card: ModelCard) -> dict[str, Any]:
    """One golden sample as an infer request."""
    flat = card.golden[0].input if card.golden else [0.0] * card.input.size
    return {
        "id": "example-1",
        "inputs": [
            {
                "name": card.input.name,
                "shape": [1, *card.input.sample_shape],
                "datatype": "FP32",
                "data": list(flat),
            }
        ],
    }


def _reshape(flat: list[float], shape: tuple[int, ...]) -> Any:
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [_reshape(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]
