"""CPU time per request of the ASGI app alone, in process: no sockets, no HTTP parser.

Not a test. Calls the app of ``--repo`` (default: this checkout) directly with a
``POST /predict`` and a V2 infer request holding a real digits sample, and
reports the least CPU time (``time.process_time``, so other load on the
machine hardly matters) per request over 5 rounds; for this checkout, also the
bare Starlette + ONNX Runtime app of ``benchmarks/bare_server.py``. Run it for
the checkouts before and after a change to see what the change costs.

    .venv/bin/python benchmarks/app_cpu.py --repo /path/to/old/checkout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROW = [0.0, 1.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
PREDICT = json.dumps({"image": [ROW] * 8}).encode()
INFER = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": ROW * 8}]}
).encode()


async def cpu_per_request(app: Any, path: str, body: bytes, n: int) -> tuple[float, set[int]]:
    """Least microseconds of CPU per request over 5 rounds of ``n``, and the statuses seen."""
    headers = [(b"host", b"x"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "asgi": {"version": "3.0"},
        "state": {},
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return message

    async def send(sent: dict[str, Any]) -> None:
        if sent["type"] == "http.response.start":
            statuses.add(sent["status"])

    for _ in range(300):
        await app(dict(scope), receive, send)
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            await app(dict(scope), receive, send)
        best = min(best, (time.process_time() - start) / n * 1e6)
    return round(best, 1), statuses


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=HERE.parent)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    repo = args.repo.resolve()
    sys.path.insert(0, str(repo))
    from service.app import create_app
    from service.settings import Settings

    model = repo / "models/digits/model.onnx"
    app = create_app(Settings(model_path=model))
    async with app.router.lifespan_context(app):
        name = app.state.slot.get().runtime.name
        for path, body in (("/predict", PREDICT), (f"/v2/models/{name}/infer", INFER)):
            us, statuses = await cpu_per_request(app, path, body, args.requests)
            print(
                json.dumps(
                    {"repo": str(repo), "path": path, "cpu_us": us, "statuses": sorted(statuses)}
                )
            )
    if repo == HERE.parent:
        sys.path.insert(0, str(HERE))
        import bare_server

        bare = bare_server.create_app(model)
        us, statuses = await cpu_per_request(bare, "/predict", PREDICT, args.requests)
        print(json.dumps({"bare": "starlette + ort", "path": "/predict", "cpu_us": us}))


if __name__ == "__main__":
    asyncio.run(main())
