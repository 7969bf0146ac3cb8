"""SIGHUP reloads on a real server (``python -m service``), with one worker and with two.

In-flight requests finish on the old model; new connections get the new one; a corrupt
file is refused with one log line per worker and the served model stays; a SIGHUP that
arrives while the service starts neither kills it nor is lost.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_helpers import REPO, free_port, stop, wait_ready

from bnfold import digest

pytestmark = pytest.mark.slow
BODY = json.dumps({"features": [5.1, 3.5, 1.4, 0.2]}).encode()


class Server:
    """``python -m service`` serving ``path``, its log in a file."""

    def __init__(self, path: Path, workers: int, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "service.log"
        env = {**os.environ, "MODEL_PATH": str(path), "LOG_LEVEL": "info"}
        command = [sys.executable, "-m", "service", "--port", str(self.port)]
        with open(self.log, "wb") as sink:
            self.proc = subprocess.Popen(
                [*command, "--workers", str(workers)],
                cwd=REPO,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def lines(self, needle: str) -> list[str]:
        return [x for x in self.log.read_text(errors="replace").splitlines() if needle in x]

    def until_lines(self, needle: str, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines(needle)) < count:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def versions(self, connections: int = 8) -> set[str]:
        """The model versions that ``connections`` fresh connections are answered with."""
        seen = set()
        for _ in range(connections):
            with httpx.Client() as client:  # a new connection: any worker may take it
                response = client.post(f"{self.url}/predict", content=BODY, headers=JSON)
                assert response.status_code == 200, response.text
                seen.add(response.json()["model_version"])
        return seen


JSON = {"content-type": "application/json"}


def read_response(sock: socket.socket) -> tuple[str, bytes]:
    """The status line and the body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return lines[0], body


def put(data: bytes, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


@pytest.fixture()
def models(model_dir: Path, tmp_path: Path) -> Iterator[tuple[Path, bytes, bytes]]:
    """The served file (the tabular model) and the bytes of another valid tabular model."""
    import svc_models

    path = tmp_path / "model.onnx"
    shutil.copyfile(model_dir / "tabular.onnx", path)
    other, _ = svc_models.tabular_model(seed=7)
    new = svc_models.save(other, tmp_path / "other.onnx").read_bytes()
    yield path, path.read_bytes(), new


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_swaps_without_dropping_a_request(
    models: tuple[Path, bytes, bytes], tmp_path: Path, workers: int
) -> None:
    path, old_bytes, new_bytes = models
    old, new = (digest.check(b).version for b in (old_bytes, new_bytes))
    server = Server(path, workers, tmp_path)
    try:
        wait_ready(server.proc, server.url, timeout=60)
        assert server.versions() == {old}
        # A request in flight: its headers are in, its body is not yet.
        pending = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        head = (
            f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode()
        pending.sendall(head)
        time.sleep(0.3)  # the worker has started the request on the model it serves
        put(new_bytes, path)
        server.proc.send_signal(signal.SIGHUP)
        server.until_lines("model reloaded (SIGHUP)", workers)
        assert server.versions() == {new}
        pending.sendall(BODY)
        status, body = read_response(pending)
        pending.close()
        assert status.startswith("HTTP/1.1 200"), status
        assert json.loads(body)["model_version"] == old

        put(new_bytes[: len(new_bytes) // 2], path)  # an interrupted copy
        server.proc.send_signal(signal.SIGHUP)
        server.until_lines("refused, still serving version " + new, workers)
        assert server.versions() == {new}
        assert len(server.lines("refused")) == workers  # one line per worker
        assert server.proc.poll() is None
    finally:
        stop(server.proc)
    assert server.proc.returncode == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sighup_while_starting_is_kept_for_later(
    models: tuple[Path, bytes, bytes], tmp_path: Path, workers: int
) -> None:
    path, _, new_bytes = models
    server = Server(path, workers, tmp_path)
    try:
        # The model is checked; one worker is about to start serving, two are starting.
        server.until_lines("listening on", 1)
        put(new_bytes, path)
        for _ in range(5):
            server.proc.send_signal(signal.SIGHUP)
            time.sleep(0.1)
        wait_ready(server.proc, server.url, timeout=60)
        new = digest.check(new_bytes).version
        deadline = time.monotonic() + 30
        while server.versions() != {new}:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.1)
        assert server.proc.poll() is None and not server.lines("died")
    finally:
        stop(server.proc)
    assert server.proc.returncode == 0
