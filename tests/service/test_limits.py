"""service.limits in the app itself (no wire): header count and requests in progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from service_helpers import make_settings

from service.app import create_app


def test_too_many_header_fields_are_431_before_the_token_check(model_dir: Path) -> None:
    app = create_app(make_settings(model_dir / "image.onnx", max_headers=10, api_token="t" * 20))
    with TestClient(app) as client:
        many = {f"x-h{i}": "1" for i in range(12)}
        response = client.get("/model", headers=many)  # no token either: the limit comes first
        assert response.status_code == 431
        assert response.json() == {"error": "the request has more than 10 header fields"}
        assert response.headers["connection"] == "close"
        assert client.get("/health/live").status_code == 200


def test_beyond_max_concurrency_is_503_and_the_probes_still_answer(model_dir: Path) -> None:
    app = create_app(make_settings(model_dir / "image.onnx", max_concurrency=3))

    async def scenario() -> None:
        release = asyncio.Event()

        async def stalled_body() -> AsyncIterator[bytes]:
            yield b'{"image": '
            await release.wait()
            yield b"0}"

        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            headers = {"content-type": "application/json"}
            held = [
                asyncio.create_task(
                    client.post("/predict", content=stalled_body(), headers=headers)
                )
                for _ in range(3)
            ]
            await asyncio.sleep(0.1)
            busy = await client.post("/predict/batch", json={"samples": []})
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "1"
            assert busy.json() == {
                "error": "the server already has 3 requests in progress; retry later"
            }
            for probe in ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"):
                assert (await client.get(probe)).status_code == 200, probe
            release.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [422] * 3
            assert (await client.post("/predict", json={"image": 0})).status_code == 422

    asyncio.run(scenario())


def test_probes_are_exempt_under_a_path_prefix_too(model_dir: Path) -> None:
    app = create_app(make_settings(model_dir / "image.onnx", api_token="t" * 20))
    with TestClient(app, root_path="/api") as client:
        assert client.get("/api/health/ready").status_code == 200  # no token needed
        assert client.get("/api/model").status_code == 401
