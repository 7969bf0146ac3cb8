"""The ASGI fast path and the FastAPI routes answer every request byte for byte alike.

Each request goes four ways: through the fast path and through the FastAPI
route (the fast path taken out of the app), each with and without a
``root_path``. The matrix covers every answer the POST data routes give:
200, 400, 404, 413, 415, 422, 500 and 503.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from service_helpers import make_settings

from bnfold.card import ModelCard
from service.app import create_app
from service.fastpath import FastPath

JSON = {"content-type": "application/json"}
VARIANTS = [(fast, root) for fast in (True, False) for root in ("", "/api")]


def _app(model_dir: Path, fast: bool, **settings: Any) -> FastAPI:
    app = create_app(make_settings(model_dir / "image.onnx", **settings))
    if not fast:  # before the middleware stack is built, on the first call
        app.user_middleware = [m for m in app.user_middleware if m.cls is not FastPath]
    return app


def _answer(response: Any) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k != "date"}
    return response.status_code, headers, response.content


def answers(
    model_dir: Path,
    path: str,
    send: Callable[[TestClient, str], Any],
    *,
    ready: bool = True,
    prepare: Callable[[FastAPI], None] | None = None,
    **settings: Any,
) -> list[tuple[int, dict[str, str], bytes]]:
    """The answer of each variant to ``send(client, path)``."""
    out = []
    for fast, root in VARIANTS:
        app = _app(model_dir, fast, **settings)
        client = TestClient(app, root_path=root, raise_server_exceptions=False)
        if ready:
            with client:
                if prepare:
                    prepare(app)
                out.append(_answer(send(client, root + path)))
        else:
            out.append(_answer(send(client, root + path)))
    return out


def body_for(path: str, card: ModelCard, good: bool) -> bytes:
    flat = card.golden[0].input
    grid = [flat[r * 8 : (r + 1) * 8] for r in range(8)]
    if path == "/predict":
        value: Any = {"image": grid if good else grid[:7]}
    elif path == "/predict/batch":
        value = {"samples": [{"image": grid}] * (1 if good else 65)}
    else:
        shape = [1, 1, 8, 8] if good else [1, 64]
        value = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": flat}]}
    return json.dumps(value).encode()


PATHS = ["/predict", "/predict/batch", "/v2/models/digits/infer"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "case", ["ok", "not json", "nan", "does not fit", "wrong type", "bad length", "deep"]
)
def test_same_answers_for_every_body(
    model_dir: Path, image_card: ModelCard, path: str, case: str
) -> None:
    body = {
        "ok": body_for(path, image_card, True),
        "not json": b'{"image": [1, 2',
        "nan": b'{"image": NaN}',
        "does not fit": body_for(path, image_card, False),
        "deep": b"[" * 2000 + b"]" * 2000,
    }.get(case, body_for(path, image_card, True))
    headers = {
        "wrong type": {"content-type": "text/csv"},
        "bad length": {**JSON, "content-length": "12x"},
    }.get(case, JSON)
    found = answers(model_dir, path, lambda c, p: c.post(p, content=body, headers=headers))
    status = found[0][0]
    expected = {"ok": 200, "not json": 400, "nan": 400, "does not fit": 422, "deep": 400}
    expected.update({"wrong type": 415, "bad length": 400})
    assert status == expected[case], found[0]
    assert all(answer == found[0] for answer in found), found


@pytest.mark.parametrize("path", PATHS)
def test_same_answers_when_too_large(model_dir: Path, path: str) -> None:
    big = b'{"image": "' + b"a" * 4096 + b'"}'

    def chunks() -> Any:  # no Content-Length: counted while reading
        yield big[:100]
        yield big[100:]

    for send in (
        lambda c, p: c.post(p, content=big, headers=JSON),
        lambda c, p: c.post(p, content=chunks(), headers=JSON),
    ):
        found = answers(model_dir, path, send, max_body_bytes=2048)
        assert found[0][0] == 413
        assert all(answer == found[0] for answer in found), found


@pytest.mark.parametrize("path", [*PATHS, "/v2/models/digits/versions/0/infer"])
def test_same_answers_when_not_ready(model_dir: Path, image_card: ModelCard, path: str) -> None:
    body = body_for(path, image_card, True)
    found = answers(
        model_dir, path, lambda c, p: c.post(p, content=body, headers=JSON), ready=False
    )
    assert found[0][0] == 503
    assert all(answer == found[0] for answer in found), found


def test_same_answers_for_an_unknown_model_or_version(
    model_dir: Path, image_card: ModelCard
) -> None:
    body = body_for("/v2/models/digits/infer", image_card, True)
    for path in ("/v2/models/other/infer", "/v2/models/digits/versions/0/infer"):
        found = answers(model_dir, path, lambda c, p: c.post(p, content=body, headers=JSON))
        assert found[0][0] == 404
        assert all(answer == found[0] for answer in found), found
    versioned = f"/v2/models/digits/versions/{image_card.version}/infer"
    found = answers(model_dir, versioned, lambda c, p: c.post(p, content=body, headers=JSON))
    assert found[0][0] == 200
    assert all(answer == found[0] for answer in found), found


@pytest.mark.parametrize("path", PATHS)
def test_same_answers_on_an_internal_error(
    model_dir: Path, image_card: ModelCard, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def break_model(app: FastAPI) -> None:
        def boom(batch: Any) -> Any:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(app.state.slot.get().runtime, "run", boom)

    body = body_for(path, image_card, True)
    found = answers(
        model_dir, path, lambda c, p: c.post(p, content=body, headers=JSON), prepare=break_model
    )
    assert found[0][0] == 500
    assert found[0][2] == b'{"error":"internal error"}'
    assert all(answer == found[0] for answer in found), found


def test_metrics_label_both_paths_alike(model_dir: Path, image_card: ModelCard) -> None:
    body = body_for("/v2/models/digits/infer", image_card, True)
    labels = []
    for fast in (True, False):
        with TestClient(_app(model_dir, fast)) as client:
            client.post("/v2/models/digits/infer", content=body, headers=JSON)
            client.post("/predict", content=b"{}", headers=JSON)
            text = client.get("/metrics").text
        labels.append(sorted(line for line in text.splitlines() if "requests_total{" in line))
    assert labels[0] == labels[1]
    assert any('route="/v2/models/{model_name}/infer",status="200"' in x for x in labels[0])
