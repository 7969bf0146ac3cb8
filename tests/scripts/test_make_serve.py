"""`make serve`: binds 127.0.0.1 unless HOST is set, and Ctrl-C or SIGTERM end it without an
error from make (the server replaces the recipe's shell, drains and exits 0)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "digits" / "model.onnx"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test() -> Iterator[None]:
    yield
    while _STARTED:  # a failed assertion must not leave a server running
        proc = _STARTED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _make_serve(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[str]:
    """`make serve` in its own process group (as a terminal's foreground job is), with this
    interpreter as the venv's Python: the venv stamp is taken as done (-o), nothing installs."""
    stamp = tmp_path / "venv" / ".serve"
    stamp.parent.mkdir(exist_ok=True)
    stamp.touch()
    environ = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "MODEL_PATH")}
    args = [f"VENV={stamp.parent}", f"PY={sys.executable}", f"MODEL={MODEL}", f"PORT={port}"]
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "serve", *args, "-o", str(stamp)],
        cwd=REPO,
        env={**environ, "LOG_LEVEL": "info", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _STARTED.append(proc)
    return proc


def _wait_ready(proc: subprocess.Popen[str], host: str, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"http://{host}:{port}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("make serve: not ready in 60 s")


def _listening(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def _server_pid(make_pid: int) -> int:
    children = Path(f"/proc/{make_pid}/task/{make_pid}/children").read_text().split()
    assert len(children) == 1, children  # the server itself: it replaced the recipe's shell
    return int(children[0])


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, err


def test_ctrl_c_ends_it_quietly_on_127_0_0_1(tmp_path: Path) -> None:
    port = _free_port()
    proc = _make_serve(tmp_path, port)
    _wait_ready(proc, "127.0.0.1", port)
    assert _listening(port) == {"127.0.0.1"}
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    code, err = _finish(proc)
    assert "***" not in err, err  # make reports no failed recipe
    assert "Traceback" not in err
    assert code in (0, -signal.SIGINT)  # make ends itself by the signal it got
    assert _listening(port) == set()


def test_sigterm_to_make_stops_the_server_without_an_error(tmp_path: Path) -> None:
    port = _free_port()
    proc = _make_serve(tmp_path, port, HOST="127.0.0.2")
    _wait_ready(proc, "127.0.0.2", port)
    assert _listening(port) == {"127.0.0.2"}  # HOST, when set, is the bind address
    server = _server_pid(proc.pid)
    proc.send_signal(signal.SIGTERM)  # make forwards it to the server
    code, err = _finish(proc)
    assert "***" not in err and "Terminated" not in err, err
    assert "Application shutdown complete" in err  # it drained
    assert code == -signal.SIGTERM
    assert not Path(f"/proc/{server}").exists()


def test_sigterm_to_the_server_ends_make_with_status_0(tmp_path: Path) -> None:
    port = _free_port()
    proc = _make_serve(tmp_path, port)
    _wait_ready(proc, "127.0.0.1", port)
    os.kill(_server_pid(proc.pid), signal.SIGTERM)  # a process manager stopping the server
    code, err = _finish(proc)
    assert code == 0, err
    assert "***" not in err
