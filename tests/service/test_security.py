"""Bearer token, CORS, and the absence of any model-management surface."""

from __future__ import annotations

from pathlib import Path

from conftest import make_settings
from fastapi.testclient import TestClient

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


def test_service_never_imports_pickle_loading_or_torch() -> None:
    root = Path(__file__).resolve().parents[2] / "service"
    for source in root.glob("*.py"):
        text = source.read_text()
        for banned in ("import torch", "import pickle", "torch.load", "pickle.load"):
            assert banned not in text, f"{source.name}: {banned}"
