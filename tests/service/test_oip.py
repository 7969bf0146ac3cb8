"""Open Inference Protocol (V2) routes through the TestClient."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bnfold.card import ModelCard

VERSIONED = "/v2/models/digits/versions/{v}"


def infer_body(card: ModelCard, rows: int = 1, **tensor: Any) -> dict[str, Any]:
    data = [x for g in card.golden[:rows] for x in g.input]
    base = {"name": "input", "shape": [rows, 1, 8, 8], "datatype": "FP32", "data": data}
    return {"inputs": [{**base, **tensor}]}


def test_server_metadata_and_health(image: TestClient) -> None:
    meta = image.get("/v2").json()
    assert meta["name"] == "bnfold"
    assert "binary_tensor_data" in meta["extensions"]
    assert image.get("/v2/health/live").json() == {"live": True}
    assert image.get("/v2/health/ready").json() == {"ready": True}


def test_model_metadata_and_ready(image: TestClient, image_card: ModelCard) -> None:
    version = image_card.version
    for prefix in ("/v2/models/digits", VERSIONED.format(v=version)):
        meta = image.get(prefix).json()
        assert meta == {
            "name": "digits",
            "versions": [version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
            "outputs": [
                {"name": "logits", "datatype": "FP32", "shape": [-1, 10]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
            ],
        }
        assert image.get(f"{prefix}/ready").json() == {"name": "digits", "ready": True}


def test_unknown_model_or_version_is_404(image: TestClient) -> None:
    for path in ("/v2/models/other", "/v2/models/other/ready", VERSIONED.format(v="0") + "/ready"):
        response = image.get(path)
        assert response.status_code == 404
        assert "error" in response.json()
    response = image.post("/v2/models/other/infer", json={"inputs": []})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown model 'other': this server serves 'digits'"


def test_infer_matches_predict(image: TestClient, image_card: ModelCard) -> None:
    body = {**infer_body(image_card, rows=3), "id": "req-7"}
    response = image.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 200
    out = response.json()
    assert out["id"] == "req-7"
    assert out["model_name"] == "digits"
    assert [o["name"] for o in out["outputs"]] == ["logits", "probabilities"]
    probs = out["outputs"][1]
    assert probs["shape"] == [3, 10] and probs["datatype"] == "FP32"
    for i in range(3):
        flat = image_card.golden[i].input
        grid = [flat[r * 8 : (r + 1) * 8] for r in range(8)]
        alone = image.post("/predict", json={"image": grid}).json()["probabilities"]
        assert probs["data"][i * 10 : (i + 1) * 10] == list(alone.values())


def test_infer_nested_data_and_selected_outputs(image: TestClient, image_card: ModelCard) -> None:
    flat = image_card.golden[0].input
    nested = [[[flat[r * 8 : (r + 1) * 8] for r in range(8)]]]
    body = infer_body(image_card, data=nested)
    body["outputs"] = [{"name": "probabilities", "parameters": {"binary_data": False}}]
    body["parameters"] = {"binary_data_output": True}  # a hint; answered as JSON
    out = image.post("/v2/models/digits/infer", json=body).json()
    assert [o["name"] for o in out["outputs"]] == ["probabilities"]
    assert "id" not in out


def test_infer_binary_tensor_extension(image: TestClient, image_card: ModelCard) -> None:
    array = np.asarray(image_card.golden[0].input, dtype=np.float32).reshape(1, 1, 8, 8)
    header = infer_body(image_card)
    tensor = header["inputs"][0]
    del tensor["data"]
    tensor["parameters"] = {"binary_data_size": array.nbytes}
    head = json.dumps(header).encode()
    response = image.post(
        "/v2/models/digits/infer",
        content=head + array.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "content-type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    as_json = image.post("/v2/models/digits/infer", json=infer_body(image_card)).json()
    assert response.json()["outputs"] == as_json["outputs"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "x"}, "unknown input 'x': expected 'input'"),
        ({"shape": [1, 64]}, "shape must be [N, 1, 8, 8] with 1 <= N <= 64"),
        ({"shape": [0, 1, 8, 8], "data": []}, "shape must be [N, 1, 8, 8]"),
        ({"shape": [65, 1, 8, 8]}, "shape must be [N, 1, 8, 8]"),
        ({"shape": [1, 1, 8, True]}, "shape must be"),
        ({"datatype": "BYTES"}, "datatype must be one of FP32"),
        ({"data": [1.0] * 63}, "63 values do not fill shape"),
        ({"data": "abc"}, "'data' must be a list of 64 numbers"),
        ({"data": [1.0] * 63 + ["x"]}, "data[63] must be a number, got string"),
        ({"data": [1.0] * 63 + [1e39]}, "within float32 range"),
        (
            {"parameters": {"binary_data_size": 256}},
            "binary_data_size must be 256 bytes, the body holds 0",
        ),
    ],
)
def test_infer_refusals_are_400(
    image: TestClient, image_card: ModelCard, change: dict[str, Any], message: str
) -> None:
    response = image.post("/v2/models/digits/infer", json=infer_body(image_card, **change))
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": []}, "'inputs' must hold exactly one tensor"),
        ([], "the infer request must be a JSON object"),
        ({"inputs": [{"name": "input"}]}, "input tensor is missing 'shape'"),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
                ],
                "outputs": [{"name": "nope"}],
            },
            "unknown output",
        ),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
                ],
                "id": 5,
            },
            "'id' must be a string",
        ),
    ],
)
def test_infer_envelope_refusals(image: TestClient, body: Any, message: str) -> None:
    response = image.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_infer_content_types(image: TestClient, image_card: ModelCard) -> None:
    raw = json.dumps(infer_body(image_card)).encode()
    assert image.post("/v2/models/digits/infer", content=raw).status_code == 200  # tritonclient
    text = image.post("/v2/models/digits/infer", content=raw, headers={"content-type": "text/csv"})
    assert text.status_code == 415
    bad_header = image.post(
        "/v2/models/digits/infer",
        content=raw,
        headers={"Inference-Header-Content-Length": str(len(raw) + 1)},
    )
    assert bad_header.status_code == 400
    assert "Inference-Header-Content-Length" in bad_header.json()["error"]
    assert image.post("/v2/models/digits/infer", content=b"{oops").status_code == 400
