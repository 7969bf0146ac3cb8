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
import signal
import sys
import textwrap
import typing
from collections.abc import Sequence
from typing import Any, Literal

FLAGS = ("host", "port", "workers")  # settings that are also command-line flags


def build_parser(prog: str = "python -m service") -> argparse.ArgumentParser:
    """The parser; its help lists every setting, generated from ``Settings``' fields."""
    from service.settings import Settings

    fields = Settings.model_fields
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check a bnfold ONNX model against its card, then serve it with uvicorn.\n"
        "Settings come from environment variables (below); a flag overrides its variable.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    types = {"port": int, "workers": int}
    for name in FLAGS:
        parser.add_argument(
            f"--{name}",
            type=types.get(name, str),
            help=f"overrides {_env_name(name, fields[name])}",
        )
    return parser


def settings_help(width: int = 79) -> str:
    """Every setting: its variable, what it does, its default and its allowed values."""
    from service.settings import Settings

    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        env = _env_name(name, field)
        text = _description(env, field.description)
        facts = ["required" if field.is_required() else f"default: {_default(field.default)}"]
        facts += _constraints(field)
        text = f"{text} ({'; '.join(facts)})" if text else f"({'; '.join(facts)})"
        wrapped = textwrap.wrap(text, width=width - 24)
        head = f"  {env:<21} "
        if len(head) > 24:  # a long name gets a line of its own
            lines.append(head.rstrip())
            head = " " * 24
        lines.append(head + wrapped[0])
        lines += [" " * 24 + rest for rest in wrapped[1:]]
    return "\n".join(lines)


def _env_name(name: str, field: Any) -> str:
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return str(alias or name).upper()


def _description(env: str, description: str | None) -> str:
    text = (description or "").strip()
    # The descriptions start with their variable's name ("MODEL_PATH: ..."): said already.
    if text.upper().startswith(env + ":"):
        text = text[len(env) + 1 :].strip()
    return text


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _constraints(field: Any) -> list[str]:
    facts = []
    choices = (
        typing.get_args(field.annotation) if typing.get_origin(field.annotation) is Literal else ()
    )
    if choices:
        facts.append("one of " + ", ".join(str(c) for c in choices))
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    if low is not None and high is not None:
        facts.append(f"{low}..{high}")
    elif low is not None:
        facts.append(f">= {low}")
    if field.annotation is bool:
        facts.append("true or false")
    return facts


def main(argv: Sequence[str] | None = None, prog: str = "python -m service") -> int:
    """Run the service; return the exit status (2 for a refused model or setting)."""
    # A reload request (SIGHUP) while starting waits for the model instead of ending the
    # process (service.reload.hold_sighup; that module imports onnxruntime).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    args = build_parser(prog).parse_args(argv)
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
