"""The ceiling for ``serve_load.py``: Starlette + ONNX Runtime on the same file, nothing else.

One Starlette route, ``POST /predict``: orjson in, ``np.asarray`` into the
model's input shape, ONNX Runtime (the service's session options: one thread,
sequential, all graph optimizations), orjson out, with the same response
fields as the service. No validation, no limits, no metrics, no error
handling, no middleware: what serving this file cannot beat. uvicorn runs it
as it runs the service (httptools, uvloop, no access log).

    python benchmarks/bare_server.py --model models/digits/model.onnx --port 8002
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bnfold.digest import read_card


def create_app(model: Path) -> Starlette:
    """The bare app serving ``model``."""
    data = model.read_bytes()
    card = read_card(data)  # labels, input name and shape only: nothing is checked
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    run = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]).run
    shape = (1, *card.input.sample_shape)
    key = "image" if card.input.kind == "image" else "features"
    labels, name, version = list(card.labels), card.input.name, card.version

    async def predict(request: Request) -> Response:
        values = orjson.loads(await request.body())[key]
        probs = run(["probabilities"], {name: np.asarray(values, np.float32).reshape(shape)})[0][0]
        index = int(probs.argmax())
        body: dict[str, Any] = {
            "label": labels[index],
            "class_index": index,
            "probabilities": dict(zip(labels, probs.tolist(), strict=True)),
            "model_version": version,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b'{"ready":true}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/health/ready", ready, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.model),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
