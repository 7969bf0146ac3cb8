"""The connection limits on a real server (uvicorn + ``service.protocol`` on 127.0.0.1).

TestClient has no wire: header bytes, timeouts and connection counts exist only
here. The server runs with short timeouts and small limits so that each test
takes about a second.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_helpers import free_port, start_service, stop, wait_ready

pytestmark = pytest.mark.slow
LIMITS = {
    "TIMEOUT_KEEP_ALIVE": "0.5",
    "TIMEOUT_HEADERS": "1",
    "TIMEOUT_BODY": "1",
    "MAX_HEADER_BYTES": "4096",
    "MAX_HEADERS": "20",
    "MAX_CONNECTIONS": "40",
    "MAX_CONCURRENCY": "4",
    "ERROR_BACKOFF": "10000",  # a 4xx of 50 us or more: a pause of ERROR_BACKOFF_MAX
    "ERROR_BACKOFF_MAX": "0.5",
}
WAIT = 6.0  # seconds a test waits for a timer of about 1 s, on a busy machine


class Server:
    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid
        self.port = int(url.rsplit(":", 1)[1])

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        return sock

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[Server]:
    port = free_port()
    proc = start_service(model_dir / "image.onnx", port, env=LIMITS)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        yield Server(url, proc.pid)
    finally:
        stop(proc)


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (or resets) the connection."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def status_and_body(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_a_head_over_the_budget_is_431_before_it_is_buffered(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        status, body = status_and_body(read_all(sock))
    assert status == 431
    assert body == {"error": "the request line and headers exceed 4096 bytes"}

    # Defect 2: four parallel 48 MiB headers cost +259 MiB of RSS; now they are cut off.
    before = server.peak_rss_mib()

    def flood() -> None:
        with server.connect() as sock, contextlib.suppress(OSError):  # reset once refused
            sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (48 << 20))

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.peak_rss_mib() - before < 16
    assert httpx.get(f"{server.url}/health/live").status_code == 200


def test_a_head_within_the_budget_is_served(server: Server) -> None:
    filler = {"x-fill": "a" * 3500}
    assert httpx.get(f"{server.url}/health/live", headers=filler).status_code == 200


def test_too_many_header_fields_are_431(server: Server) -> None:
    headers = {f"x-h{i}": "1" for i in range(25)}
    response = httpx.get(f"{server.url}/health/live", headers=headers)
    assert response.status_code == 431
    assert response.json() == {"error": "the request has more than 20 header fields"}


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    start = time.monotonic()
    with server.connect() as sock:
        assert read_all(sock) == b""
    assert 0.4 < time.monotonic() - start < WAIT


def test_a_connection_dripping_blank_lines_is_closed(server: Server) -> None:
    start = time.monotonic()
    with server.connect() as sock:
        try:
            while time.monotonic() - start < WAIT:
                sock.sendall(b"\r\n")  # never starts a request, never lets the timer go
                time.sleep(0.1)
        except OSError:
            pass
    assert time.monotonic() - start < WAIT


def test_slow_headers_are_408(server: Server) -> None:
    start = time.monotonic()
    with server.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        raw = read_all(sock)
    assert status_and_body(raw) == (408, {"error": "the request headers took more than 1 s"})
    assert 0.9 < time.monotonic() - start < WAIT


def test_a_stalled_body_is_408(server: Server) -> None:
    start = time.monotonic()
    with server.connect() as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"image": '
        )
        raw = read_all(sock)
    assert status_and_body(raw) == (408, {"error": "the request body took more than 1 s"})
    assert 0.9 < time.monotonic() - start < WAIT


def test_a_body_dripping_after_an_early_answer_is_cut_off(server: Server) -> None:
    start = time.monotonic()
    with server.connect() as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        answer = sock.recv(4096)  # 415 at once: no Content-Type, the body is not read
        try:
            while time.monotonic() - start < WAIT:
                sock.sendall(b"a")
                time.sleep(0.1)
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 415")
    assert time.monotonic() - start < WAIT


def test_invalid_http_is_400_in_the_one_error_shape(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw = read_all(sock)
    assert status_and_body(raw) == (400, {"error": "the request is not valid HTTP/1.1"})


def test_probes_find_room_when_the_connections_are_all_taken(server: Server) -> None:
    # Defect 3: at the fd limit every client, probes included, got EOF.
    idle = [server.connect() for _ in range(30)]
    half_sent = [server.connect() for _ in range(30)]
    for sock in half_sent:
        sock.sendall(b"GET /health/live HTTP/1.1\r\n")
    try:
        for _ in range(5):
            assert httpx.get(f"{server.url}/health/ready", timeout=WAIT).status_code == 200
    finally:
        for sock in idle + half_sent:
            sock.close()


def test_requests_beyond_the_concurrency_limit_are_503_but_probes_answer(
    server: Server,
) -> None:
    stalled = [server.connect() for _ in range(4)]
    for sock in stalled:  # four requests in progress, waiting for their bodies
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
    time.sleep(0.2)
    try:
        busy = httpx.post(f"{server.url}/predict", json={"image": 0})
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert "4 requests in progress" in busy.json()["error"]
        for probe in ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"):
            assert httpx.get(f"{server.url}{probe}").status_code == 200, probe
    finally:
        for sock in stalled:
            sock.close()
    time.sleep(0.2)
    assert httpx.post(f"{server.url}/predict", json={"image": 0}).status_code == 422


def test_keep_alive_serves_several_requests_on_one_connection(server: Server) -> None:
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(f"{server.url}/health/live").status_code == 200
        assert client.get(f"{server.url}/health/live").headers.get("connection") != "close"


def test_a_connection_is_paused_after_a_refused_request_and_only_that_one(
    server: Server,
) -> None:
    # Defect 1's flood: costly bad requests must not crowd out a normal client.
    with httpx.Client() as bad, httpx.Client() as good:
        assert bad.post(f"{server.url}/predict", content=b"[[[").status_code == 415
        start = time.monotonic()
        assert good.get(f"{server.url}/health/live").status_code == 200  # another connection
        assert good.get(f"{server.url}/health/live").status_code == 200
        assert time.monotonic() - start < 0.15
        assert bad.get(f"{server.url}/health/live").status_code == 200  # waited for its pause
        assert time.monotonic() - start >= 0.15
