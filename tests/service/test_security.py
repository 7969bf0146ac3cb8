"""Bearer token, CORS, and the absence of any model-management surface."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import REPO, make_settings

from service.app import create_app

TOKEN = "t0k3n-" + "x" * 20


def test_token_guards_everything_but_probes(model_dir: Path) -> None:
    app = create_app(make_settings(model_dir / "image.onnx", api_token=TOKEN))
    with TestClient(app) as client:
        for path in ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"):
            assert client.get(path).status_code == 200, path
        for path in ("/model", "/metrics", "/v2", "/v2/models/digits", "/openapi.json"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.json() == {"error": "missing or invalid bearer token"}
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/predict", json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.post("/predict", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 422  # through the guard, refused for its content
        assert client.get("/model", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (f"bearer {TOKEN}", 200),  # the scheme is case-insensitive (RFC 7235)
        (f"BEARER {TOKEN}", 200),
        (f"Bearer   {TOKEN}", 200),  # 1*SP
        (f"Basic {TOKEN}", 401),
        (f"Bearer {TOKEN}x", 401),
        (f"Bearer {TOKEN[:-1]}", 401),
        (TOKEN, 401),
        ("Bearer", 401),
        (f"Bearer{TOKEN}", 401),
    ],
)
def test_bearer_scheme(model_dir: Path, value: str, status: int) -> None:
    app = create_app(make_settings(model_dir / "image.onnx", api_token=TOKEN))
    with TestClient(app) as client:
        assert client.get("/model", headers={"Authorization": value}).status_code == status


def test_cors_is_off_by_default(image: TestClient) -> None:
    response = image.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_when_configured(model_dir: Path) -> None:
    app = create_app(make_settings(model_dir / "image.onnx", cors_origins="https://ok.example"))
    with TestClient(app) as client:
        ok = client.get("/health/live", headers={"Origin": "https://ok.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ok.example"
        other = client.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_no_management_routes(image: TestClient) -> None:
    paths = {getattr(r, "path", "") for r in image.app.routes}  # type: ignore[attr-defined]
    assert not [p for p in paths if "repository" in p or "load" in p]
    assert image.post("/v2/repository/models/digits/load").status_code == 404


PROBE = """
import sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
import service.__main__, service.serving, service.protocol
with TestClient(create_app(Settings(model_path=sys.argv[1]))) as client:
    assert client.get("/health/ready").status_code == 200
    assert client.post("/predict", json={"image": [[0] * 8] * 8}).status_code == 200
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_serving_loads_neither_torch_nor_onnx(model_dir: Path) -> None:
    # What a running service has imported, not what its sources spell: `from torch
    # import nn` or an indirect import would escape a text search.
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(model_dir / "image.onnx")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(result.stdout.split())
    assert "service" in loaded and "onnxruntime" in loaded  # the probe did run the service
    assert not loaded & {"torch", "onnx", "training", "torchvision", "sklearn"}


def test_service_never_loads_pickles() -> None:
    root = Path(__file__).resolve().parents[2] / "service"
    for source in root.glob("*.py"):
        text = source.read_text()
        for banned in ("pickle.load", "torch.load", "np.load", "numpy.load"):
            assert banned not in text, f"{source.name}: {banned}"
