"""The HTTP API through FastAPI's TestClient: every endpoint and every bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import make_settings

from bnfold.card import ModelCard
from service.app import create_app
from service.runtime import ModelLoadError

JSON = {"content-type": "application/json"}


def grid(card: ModelCard, index: int = 0) -> list[list[float]]:
    flat = card.golden[index].input
    return [flat[r * 8 : (r + 1) * 8] for r in range(8)]


def post(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=raw, headers={**JSON, **headers})


def test_predict_image(image: TestClient, image_card: ModelCard) -> None:
    response = post(image, "/predict", {"image": grid(image_card)})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"label", "class_index", "probabilities", "model_version"}
    assert list(body["probabilities"]) == image_card.labels
    assert body["model_version"] == image_card.version
    want = image_card.golden[0].probabilities
    assert body["class_index"] == max(range(10), key=want.__getitem__)
    assert body["label"] == image_card.labels[body["class_index"]]
    for label, p in zip(image_card.labels, want, strict=True):
        assert body["probabilities"][label] == pytest.approx(p, abs=1e-6)


def test_predict_tabular_by_list_and_by_name(tabular: TestClient, tabular_card: ModelCard) -> None:
    values = tabular_card.golden[1].input
    names = tabular_card.input.columns or []
    by_list = post(tabular, "/predict", {"features": values})
    by_name = post(tabular, "/predict", {"features": dict(zip(names, values, strict=True))})
    assert by_list.status_code == by_name.status_code == 200
    assert by_list.content == by_name.content


def test_batch_equals_single_predictions(image: TestClient, image_card: ModelCard) -> None:
    samples = [{"image": grid(image_card, i)} for i in range(3)]
    batch = post(image, "/predict/batch", {"samples": samples})
    assert batch.status_code == 200
    singles = [post(image, "/predict", s).json() for s in samples]
    assert batch.json()["predictions"] == singles


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"image": [[1, 2]', 400, "the body is not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b'{"image": NaN}', 400, "NaN and Infinity are not JSON numbers"),
        (b'{"image": -Infinity}', 400, "NaN and Infinity are not JSON numbers"),
        (b'{"image": "NaN', 400, "the body is not valid JSON"),
        (b'{"image": [' + b",".join([b"[1e400" + b",0" * 7 + b"]"] * 8) + b"]}", 422, "float32"),
        (b'{"image": [' + b",".join([b"[1e39" + b",0" * 7 + b"]"] * 8) + b"]}", 422, "float32"),
        (b"[]", 422, "body must be a JSON object with 'image'"),
        (b'{"features": []}', 422, "unexpected field: expected only 'image'"),
        (b"{}", 422, "missing field 'image': expected a nested list of 8 x 8 numbers"),
        (
            b'{"image": [[1], [2], [3], [4], [5], [6], [7], [8]]}',
            422,
            "image[0]: expected a nested",
        ),
    ],
)
def test_predict_refusals(image: TestClient, body: bytes, status: int, message: str) -> None:
    response = post(image, "/predict", body)
    assert response.status_code == status
    assert response.json() == {"error": response.json()["error"]}
    assert message in response.json()["error"]


def test_errors_never_echo_input_or_trace(image: TestClient) -> None:
    secret = "sekrit-value"
    for body in ({"image": secret}, {secret: 1}, {"image": [[secret] * 8] * 8}):
        response = post(image, "/predict", body)
        assert response.status_code == 422
        assert secret not in response.text
        assert "Traceback" not in response.text
        assert len(response.text) < 200


def test_wrong_content_type_is_415(image: TestClient) -> None:
    for headers in ({"content-type": "text/plain"}, {"content-type": "application/s3cr3t"}):
        response = image.post("/predict", content=b"{}", headers=headers)
        assert response.status_code == 415
        assert response.json() == {"error": "Content-Type must be application/json"}
    assert image.post("/predict", content=b"{}").status_code == 415  # none at all
    assert image.post("/predict/batch", content=b"{}").status_code == 415
    ok = image.post(
        "/predict", content=b"{}", headers={"content-type": "Application/JSON; charset=utf-8"}
    )
    assert ok.status_code == 422  # accepted as JSON, then refused for its content


def test_body_over_the_limit_is_413_before_parsing(model_dir: Path) -> None:
    settings = make_settings(model_dir / "image.onnx", max_body_bytes=2048)
    with TestClient(create_app(settings)) as client:
        big = b"{" + b" " * 4096 + b"}"  # valid JSON, but too large
        for path in ("/predict", "/predict/batch", "/v2/models/digits/infer"):
            response = post(client, path, big)
            assert response.status_code == 413, path
            assert "2048" in response.json()["error"]

        def chunks() -> Any:  # no Content-Length: counted while reading
            yield b"{"
            yield b" " * 4096
            yield b"}"

        streamed = client.post("/predict", content=chunks(), headers=JSON)
        assert streamed.status_code == 413


def test_batch_limits(model_dir: Path, image_card: ModelCard) -> None:
    with TestClient(create_app(make_settings(model_dir / "image.onnx", max_batch_size=2))) as c:
        sample = {"image": grid(image_card)}
        too_many = post(c, "/predict/batch", {"samples": [sample] * 3})
        assert too_many.status_code == 422
        assert too_many.json()["error"] == "too many samples: 3 > limit 2"
        assert post(c, "/predict/batch", {"samples": []}).status_code == 422
        assert post(c, "/predict/batch", {"samples": [sample], "x": 1}).status_code == 422
        bad = post(c, "/predict/batch", {"samples": [sample, {"image": [[0]] * 8}]})
        assert bad.status_code == 422
        assert bad.json()["error"].startswith("samples[1].image[0]:")
        not_object = post(c, "/predict/batch", {"samples": [sample, 3]})
        assert not_object.json()["error"] == "samples[1] must be a JSON object with 'image'"


def test_model_shows_card_without_golden_and_the_measured_checks(
    image: TestClient, image_card: ModelCard, model_dir: Path
) -> None:
    import onnx
    import onnxruntime as ort

    body = image.get("/model").json()
    assert body["model_version"] == image_card.version
    assert "golden" not in body["card"]
    assert body["card"]["digest"] == image_card.digest
    assert body["fold_report"]["folded"] == 1
    # Each check against a fact established here, not a value the runtime writes.
    model = onnx.load(model_dir / "image.onnx")
    bn = sum(node.op_type == "BatchNormalization" for node in model.graph.node)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.asarray([g.input for g in image_card.golden], np.float32).reshape(-1, 1, 8, 8)
    probs = session.run(["probabilities"], {"input": x})[0]
    worst = float(np.abs(probs - np.asarray([g.probabilities for g in image_card.golden])).max())
    assert body["checks"] == {
        "digest": image_card.digest,
        "batch_normalization_nodes": bn,
        "golden_samples": len(image_card.golden),
        "golden_tolerance": image_card.golden_tolerance,
        "golden_max_abs_delta": pytest.approx(worst, abs=1e-7),
    }


def test_health(image: TestClient) -> None:
    assert image.get("/health/live").json() == {"live": True}
    assert image.get("/health/ready").json() == {"ready": True}


def test_not_ready_before_the_model_is_loaded(model_dir: Path, image_card: ModelCard) -> None:
    client = TestClient(create_app(make_settings(model_dir / "image.onnx")))  # no lifespan
    assert client.get("/health/live").status_code == 200
    for path in ("/health/ready", "/v2/health/ready", "/model", "/v2/models/digits"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.json() == {"error": "the model is not loaded yet"}
    assert post(client, "/predict", {"image": grid(image_card)}).status_code == 503


def test_lifespan_refuses_a_bad_model(model_dir: Path) -> None:
    with (
        pytest.raises(ModelLoadError, match="differs from the card"),
        TestClient(create_app(make_settings(model_dir / "hash_mismatch.onnx"))),
    ):
        pass


def test_unknown_route_and_method(image: TestClient) -> None:
    assert image.get("/nope").json() == {"error": "not found"}
    response = image.get("/predict")
    assert response.status_code == 405
    assert response.json() == {"error": "method not allowed"}


def test_openapi_documents_bodies_with_model_examples(
    image: TestClient, image_card: ModelCard
) -> None:
    spec = image.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]["golden"]["value"] == {"image": grid(image_card)}
    assert body["schema"]["required"] == ["image"]
    assert "422" in spec["paths"]["/predict"]["post"]["responses"]
    infer = spec["paths"]["/v2/models/{model_name}/infer"]["post"]["requestBody"]
    example = infer["content"]["application/json"]["examples"]["golden"]["value"]
    assert example["inputs"][0]["shape"] == [1, 1, 8, 8]
    assert image.get("/docs").status_code == 200


def test_openapi_names_tabular_features(tabular: TestClient) -> None:
    spec = tabular.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert set(content["examples"]["by_name"]["value"]["features"]) == {
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    }


def test_internal_errors_are_500_without_detail(
    image: TestClient, image_card: ModelCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = image.app.state.slot.get()  # type: ignore[attr-defined]

    def boom(batch: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(predictor.runtime, "run", boom)
    client = TestClient(image.app, raise_server_exceptions=False)
    response = post(client, "/predict/batch", {"samples": [{"image": grid(image_card)}]})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}


def test_behind_a_path_prefix_the_fastapi_route_answers_the_same(
    model_dir: Path, image_card: ModelCard
) -> None:
    # With a root_path the fast path steps aside and FastAPI's own /predict route answers.
    app = create_app(make_settings(model_dir / "image.onnx"))
    body = {"image": grid(image_card)}
    with TestClient(app) as direct:
        fast = post(direct, "/predict", body)
    with TestClient(app, root_path="/api") as proxied:
        routed = post(proxied, "/api/predict", body)
        refused = post(proxied, "/api/predict", {"image": 1})
        wrong_type = proxied.post("/api/predict", content=b"{}")
    assert routed.status_code == fast.status_code == 200
    assert routed.content == fast.content
    assert refused.status_code == 422
    assert refused.json() == {"error": "image: expected a nested list of 8 x 8 numbers, got number"}
    assert wrong_type.status_code == 415


def test_inputs_that_overflow_the_model_are_refused(image: TestClient) -> None:
    huge = [[-3e38] * 8 for _ in range(8)]  # overflows this fixture model's logits
    response = post(image, "/predict", {"image": huge})
    assert response.status_code == 422
    assert "not finite" in response.json()["error"]
    v2 = image.post(
        "/v2/models/digits/infer",
        json={
            "inputs": [
                {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [-3e38] * 64}
            ]
        },
    )
    assert v2.status_code == 422  # well-formed, but the model cannot answer it
    assert "not finite" in v2.json()["error"]


def test_a_mixed_model_documents_and_takes_raw_rows(tmp_path: Path) -> None:
    import svc_models

    model, card = svc_models.mixed_model()
    path = svc_models.save(model, tmp_path / "mixed.onnx")
    with TestClient(create_app(make_settings(path))) as client:
        body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
        examples = body["content"]["application/json"]["examples"]
        golden = examples["golden"]["value"]
        assert golden["features"][:4] == ["Dream", 0.5, "female", "2008"]  # raw values
        assert golden["features"][4] == pytest.approx(-0.2)
        named = examples["by_name"]["value"]["features"]
        assert named["island"] == "Dream" and named["bill length (mm)"] == 0.5
        by_list = post(client, "/predict", golden)
        by_name = post(client, "/predict", examples["by_name"]["value"])
        assert by_list.status_code == by_name.status_code == 200
        assert by_list.content == by_name.content
        want = card.golden[0].probabilities
        got = list(by_list.json()["probabilities"].values())
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1e-6
        schema = body["content"]["application/json"]["schema"]["properties"]["features"]
        island = schema["anyOf"][1]["properties"]["island"]
        assert island == {
            "anyOf": [
                {"type": "string", "enum": ["Biscoe", "Dream", "Torgersen"]},
                {"type": "null"},
            ]
        }
