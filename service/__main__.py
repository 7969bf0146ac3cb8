"""``python -m service [--host H] [--port P] [--workers N]``: check the model, then serve it.

Settings come from environment variables (``service.settings``); the flags
override HOST, PORT and WORKERS. The model is loaded and checked *before*
uvicorn starts, so a bad model or bad settings end the process with status 2
and one line on stderr. With one worker that runtime is served directly; with
several, each worker loads its own copy (the parent keeps none).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Check a bnfold ONNX model against its card, then serve it with uvicorn.",
    )
    parser.add_argument("--host", help="bind address (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (env WORKERS)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the service; return the exit status (2 for a refused model or setting)."""
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}

    from pydantic import ValidationError

    from service.settings import Settings, describe_error

    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"error: {describe_error(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from service.runtime import ModelLoadError, ModelRuntime

    try:
        runtime: ModelRuntime | None = ModelRuntime.load(
            settings.model_path,
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads,
        )
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "ws": "none",  # no websockets: nothing to import, nothing to expose
        "lifespan": "on",
        "server_header": False,
    }
    if settings.workers == 1:
        from service.app import create_app

        uvicorn.run(create_app(settings, runtime), **options)  # type: ignore[arg-type]
    else:
        runtime = None  # checked; each worker loads its own copy
        gc.collect()
        uvicorn.run("service.app:app_from_env", factory=True, workers=settings.workers, **options)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
