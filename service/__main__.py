"""``python -m service [--host H] [--port P] [--workers N]``: check the model, then serve it.

Settings come from environment variables (``service.settings``); the flags
override HOST, PORT and WORKERS. The port is bound and the model loaded and
checked *before* uvicorn starts, so a bad model, a bad setting or a port in use
end the process with status 2 and one line on stderr. With one worker that
runtime is served directly; with several, each worker loads its own copy (the
parent keeps none). Serving, draining and the exit status: ``service.serving``.
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
    from service.serving import StartupError, bind, check_open_files, serve

    try:
        check_open_files(settings.max_connections)
        sock = bind(settings.host, settings.port)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        runtime: ModelRuntime | None = ModelRuntime.load(**settings.model_options())
    except ModelLoadError as exc:
        sock.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        runtime = None  # checked; each worker loads its own copy
        gc.collect()
    return serve(settings, runtime, sock)


if __name__ == "__main__":
    raise SystemExit(main())
