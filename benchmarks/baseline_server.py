"""The baseline for ``serve_load.py``: a plain, hand-written FastAPI + PyTorch eager server.

What one would write first: a pydantic request model, the UNFOLDED network from
the training checkpoint (BatchNorm layers and all) in eval mode, standardization
in numpy, softmax in torch, a dict response. It is not a strawman: torch runs
single-threaded (the server is pinned to one core; more threads only contend),
under ``torch.inference_mode()``, and uvicorn gets the same settings as the
service (httptools, uvloop, no access log). ``--endpoint async`` calls torch on
the event loop instead of FastAPI's thread pool; ``serve_load.py`` reports both.

    python benchmarks/baseline_server.py --checkpoint artifacts/digits/checkpoint.pt --port 8001
    python benchmarks/baseline_server.py --synthetic --port 8001   # digits-sized, random weights
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import ModelConfig
from training.models import build_model


class ImageRequest(BaseModel):
    image: list[list[float]]


class TabularRequest(BaseModel):
    features: list[float]


def load(checkpoint: Path | None) -> tuple[torch.nn.Module, Any, list[str], tuple[int, ...]]:
    """(eval model, standardize function, labels, sample shape) from a checkpoint or synthetic."""
    if checkpoint is None:
        config = ModelConfig(kind="cnn", in_shape=(1, 8, 8), num_classes=10, widths=(32, 64, 128))
        model = build_model(config)
        generator = torch.Generator().manual_seed(0)
        for name, buffer in model.named_buffers():  # non-trivial BN statistics
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
        mean, std = np.full(1, 4.9), np.full(1, 6.0)
        labels = [str(d) for d in range(10)]
    else:
        from training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        model, config, labels = ckpt.build(), ckpt.model_config, ckpt.labels
        mean, std = ckpt.standardization.mean, ckpt.standardization.std
    shape = tuple(config.in_shape)
    axis = (-1, 1, 1) if len(shape) == 3 else (-1,)
    mean32 = mean.reshape(axis).astype(np.float32)
    std32 = std.reshape(axis).astype(np.float32)

    def standardize(x: np.ndarray) -> np.ndarray:
        return (x - mean32) / std32

    return model.eval(), standardize, labels, shape


def create_app(checkpoint: Path | None, endpoint: str) -> FastAPI:
    """The baseline app; ``endpoint`` is 'sync' (thread pool) or 'async' (event loop)."""
    torch.set_num_threads(1)
    model, standardize, labels, shape = load(checkpoint)
    image = len(shape) == 3
    app = FastAPI()

    def infer(values: Any) -> dict[str, Any]:
        x = standardize(np.asarray(values, dtype=np.float32).reshape(shape))
        with torch.inference_mode():
            probs = torch.softmax(model(torch.from_numpy(x).unsqueeze(0)), dim=1)[0]
        index = int(probs.argmax())
        return {
            "label": labels[index],
            "class_index": index,
            "probabilities": dict(zip(labels, probs.tolist(), strict=True)),
        }

    if image and endpoint == "sync":

        @app.post("/predict")
        def predict_image(request: ImageRequest) -> dict[str, Any]:
            return infer(request.image)
    elif image:

        @app.post("/predict")
        async def predict_image_async(request: ImageRequest) -> dict[str, Any]:
            return infer(request.image)
    elif endpoint == "sync":

        @app.post("/predict")
        def predict_tabular(request: TabularRequest) -> dict[str, Any]:
            return infer(request.features)
    else:

        @app.post("/predict")
        async def predict_tabular_async(request: TabularRequest) -> dict[str, Any]:
            return infer(request.features)

    @app.get("/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--synthetic", action="store_true", help="digits-sized random CNN")
    parser.add_argument("--endpoint", choices=("sync", "async"), default="sync")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    app = create_app(args.checkpoint, args.endpoint)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
