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
    response = image.post("/v2/models/s3cr3t/infer", json={"inputs": []})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown model: this server serves 'digits'"
    response = image.post(VERSIONED.format(v="s3cr3t") + "/infer", json={"inputs": []})
    assert response.status_code == 404
    assert "s3cr3t" not in response.text


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


def test_infer_accepts_what_kserve_and_tritonclient_send(image: TestClient) -> None:
    body = {
        "id": "k-1",
        "model_name": "digits",  # kserve's InferenceRESTClient puts it in the body
        "parameters": {"binary_data_output": False},
        "inputs": [{**GOOD, "parameters": {}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
    }
    response = image.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["probabilities"]


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


GOOD = {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": 3}, "the input tensor's 'name' must be a string"),
        ({"shape": "1,1,8,8"}, "'shape' must be a list of non-negative integers"),
        ({"shape": [1, 1, 8, True]}, "'shape' must be a list of non-negative integers"),
        ({"shape": [1, 1, 8, -8]}, "'shape' must be a list of non-negative integers"),
        ({"datatype": "FLOAT"}, "'datatype' must be an Open Inference Protocol type"),
        ({"datatype": None}, "'datatype' must be an Open Inference Protocol type"),
        ({"parameters": 5}, "the input tensor's 'parameters' must be an object"),
        ({"parameters": []}, "the input tensor's 'parameters' must be an object"),
        ({"data": [1.0] * 63}, "63 values do not fill its shape"),
        ({"data": "abc"}, "'data' must be an array"),
        ({"data": [1.0] * 63 + ["x"]}, "data[63] must be a number, got string"),
        ({"data": [1.0] * 63 + [None]}, "data[63] must be a number, got null"),
        ({"data": [[[[0.0] * 8] * 8], 0.0]}, "nested exactly as its shape"),
        ({"data": [[[[0.0] * 8] * 7]]}, "nested exactly as its shape"),
        ({"data": [[[[[0.0]] * 8] * 8]]}, "data[0] must be a number, got array"),
        (
            {"parameters": {"binary_data_size": 256}},
            "the input tensor has both 'data' and 'binary_data_size'",
        ),
        ({"extra": 1}, "the input tensor has a field other than 'name', 'shape'"),
    ],
)
def test_infer_protocol_refusals_are_400(
    image: TestClient, change: dict[str, Any], message: str
) -> None:
    _refused(image, 400, {"inputs": [{**GOOD, **change}]}, message)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "x"}, "unknown input name: the model's input is 'input'"),
        ({"shape": [1, 64], "data": [0.0] * 64}, "shape must be [N, 1, 8, 8] with 1 <= N <= 64"),
        ({"shape": [0, 1, 8, 8], "data": []}, "shape must be [N, 1, 8, 8]"),
        ({"shape": [65, 1, 8, 8], "data": [0.0] * 65 * 64}, "shape must be [N, 1, 8, 8]"),
        ({"datatype": "FP64"}, "datatype must be FP32, the model's input type"),
        ({"datatype": "INT8", "data": [0] * 64}, "datatype must be FP32"),
        ({"data": [1.0] * 63 + [1e39]}, "within float32 range"),
        ({"data": [1.0] * 63 + [10**40]}, "within float32 range"),
    ],
)
def test_infer_model_refusals_are_422(
    image: TestClient, change: dict[str, Any], message: str
) -> None:
    _refused(image, 422, {"inputs": [{**GOOD, **change}]}, message)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ([], 400, "the infer request must be a JSON object"),
        ({"inputs": {}}, 400, "'inputs' must be a list of tensor objects"),
        ({"inputs": [3]}, 400, "'inputs' must be a list of tensor objects"),
        ({"inputs": [{"name": "input"}]}, 400, "the input tensor is missing 'shape'"),
        ({"inputs": [GOOD], "id": 5}, 400, "'id' must be a string"),
        ({"inputs": [GOOD], "parameters": "x"}, 400, "the request's 'parameters' must be"),
        ({"inputs": [GOOD], "outputs": {"name": "logits"}}, 400, "'outputs' must be a list"),
        ({"inputs": [GOOD], "outputs": [{"name": 1}]}, 400, "output's 'name' must be a string"),
        ({"inputs": [GOOD], "outputs": [{"name": "logits", "x": 1}]}, 400, "a field other"),
        (
            {"inputs": [GOOD], "outputs": [{"name": "logits", "parameters": 1}]},
            400,
            "output's 'parameters' must be an object",
        ),
        ({"inputs": [GOOD], "s3cr3t": 1}, 400, "the infer request has a field other than"),
        ({"inputs": [GOOD], "model_name": 1}, 400, "'model_name' must be a string"),
        ({"inputs": []}, 422, "the model takes exactly one input tensor, 'input'"),
        ({"inputs": [GOOD, GOOD]}, 422, "the model takes exactly one input tensor"),
        ({"inputs": [GOOD], "outputs": [{"name": "s3cr3t"}]}, 422, "unknown output name"),
    ],
)
def test_infer_envelope_refusals(image: TestClient, body: Any, status: int, message: str) -> None:
    _refused(image, status, body, message)


def _refused(client: TestClient, status: int, body: Any, message: str) -> None:
    response = client.post("/v2/models/digits/infer", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert "s3cr3t" not in response.text


def test_deep_nesting_is_one_pass_and_a_400(image: TestClient) -> None:
    # Defect 1: ~1,000 levels made the old recursive flattening a RecursionError (500).
    deep = "[" * 990 + "0" + "]" * 990
    body = f'{{"inputs":[{{"name":"input","shape":[1,1,8,8],"datatype":"FP32","data":{deep}}}]}}'
    response = image.post(
        "/v2/models/digits/infer", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "nested exactly as its shape" in response.json()["error"]
    deeper = body.replace("[" * 990, "[" * 2000).replace("]" * 990, "]" * 2000)
    response = image.post(
        "/v2/models/digits/infer", content=deeper, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]


def test_binary_extension_refusals(image: TestClient, image_card: ModelCard) -> None:
    array = np.zeros((1, 1, 8, 8), np.float32)
    head = {"inputs": [{**GOOD, "parameters": {"binary_data_size": 256}}]}
    del head["inputs"][0]["data"]
    raw = json.dumps(head).encode()

    def send(extra: bytes, **headers: str) -> Any:
        return image.post("/v2/models/digits/infer", content=raw + extra, headers=headers)

    split = {"Inference-Header-Content-Length": str(len(raw))}
    assert send(array.tobytes(), **split).status_code == 200
    short = send(array.tobytes()[:-4], **split)
    assert short.status_code == 400 and "252 bytes of binary data, not 256" in short.text
    extra = send(array.tobytes() + b"\0" * 4, **split)
    assert extra.status_code == 400
    no_extension = send(b"")  # binary_data_size in a plain JSON request
    assert no_extension.status_code == 400
    assert "needs the binary tensor extension" in no_extension.json()["error"]
    nan = np.full((1, 1, 8, 8), np.nan, np.float32)
    assert send(nan.tobytes(), **split).status_code == 422
    huge = {"Inference-Header-Content-Length": "9" * 5000}
    assert send(array.tobytes(), **huge).status_code == 400  # not a 500 from int()


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
