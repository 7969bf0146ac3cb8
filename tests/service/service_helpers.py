"""Helpers the service tests import (fixtures live in conftest.py): settings, real servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# The committed default digits model; BNFOLD_REAL_MODEL points the tests at another export.
REAL_MODEL = Path(os.environ.get("BNFOLD_REAL_MODEL", REPO / "models" / "digits" / "model.onnx"))


def make_settings(path: Path, **changes: object) -> Settings:
    """Settings for ``path`` that ignore the process environment."""
    return Settings(model_path=path, **changes)  # type: ignore[arg-type]


def free_port() -> int:
    """A port that was free a moment ago (good enough on 127.0.0.1 in tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(
    model: Path, port: int, *, env: dict[str, str] | None = None, user: int | None = None
) -> subprocess.Popen[bytes]:
    """``python -m service`` on 127.0.0.1:port serving ``model``."""
    environ = {**os.environ, "MODEL_PATH": str(model), "LOG_LEVEL": "warning", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        user=user,
    )


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 30.0) -> float:
    """Seconds until ``url/health/ready`` answers 200; fails if the process dies first."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"service exited with {proc.returncode}: {err}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise AssertionError("service not ready in time")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the process we started (by its own handle) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
