"""The reproducers of issue 11, run against any checkout: before and after a change.

Not a test (``tests/service`` holds one per defect): it measures what a hostile
client or a careless operator gets from ``python -m service`` started from
``--repo`` (default: this checkout) on that checkout's default model, and
prints one JSON line per scenario:

- ``nesting``: ~1,000-deep V2 ``data`` (statuses, ms per request, log lines);
- ``flood``: that body from 8 connections while one normal client runs (wrk);
- ``header``: one 64 MiB header, then four parallel 48 MiB ones (status, RSS);
- ``idle``: idle and half-sent connections closed within 20 s or not, stalled bodies
  within 35 s (the default TIMEOUT_BODY is 30 s);
- ``fdlimit``: the server at an fd limit of 256, 300 idle connections, a probe;
- ``statuses``: the status codes the issue compared;
- ``echo``: client values quoted back in errors;
- ``startup``: a FIFO, /dev/zero, a port in use, a tampered graph, a card with
  ``golden_tolerance`` 1e9, an invalid card: exit status, stderr lines, seconds.

    .venv/bin/python benchmarks/hostile.py --repo /path/to/old/checkout nesting flood
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import REPO, ensure_wrk, golden_bodies, rss_mib, run_wrk, write_script

PORT = 18300
DEEP = (
    '{"inputs":[{"name":"input","shape":[1,1,8,8],"datatype":"FP32","data":'
    + "[" * 990
    + "0"
    + "]" * 990
    + "}]}"
).encode()


class Service:
    """``python -m service`` of a checkout, on 127.0.0.1:PORT, pinned to core 0."""

    def __init__(self, repo: Path, env: dict[str, str] | None = None, nofile: int = 0) -> None:
        self.repo, self.url = repo, f"http://127.0.0.1:{PORT}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        environ = {**os.environ, "PYTHONPATH": str(repo), "LOG_LEVEL": "warning"}
        environ.setdefault("MODEL_PATH", str(repo / "models/digits/model.onnx"))
        environ.update(env or {})

        def limit() -> None:
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "service", "--port", str(PORT)],
            cwd=repo,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            preexec_fn=limit,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"error: the service exited with {self.proc.returncode}")
            try:
                if http("GET", "/health/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("error: the service did not get ready")

    def log_lines(self) -> int:
        self.log.seek(0)
        return len(self.log.read().splitlines())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def http(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """(status, body) of one request on a fresh connection (status 0: no answer)."""
    head = {"Host": "x", "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    raw = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
    with socket.create_connection(("127.0.0.1", PORT), timeout=30) as sock:
        sock.sendall(raw.encode() + b"\r\n" + body)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if not data:
        return 0, b""
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


JSON = {"Content-Type": "application/json"}


def nesting(repo: Path) -> dict[str, Any]:
    service = Service(repo)
    try:
        lines = service.log_lines()
        start = time.perf_counter()
        statuses = [http("POST", "/v2/models/digits-cnn/infer", DEEP, JSON)[0] for _ in range(50)]
        ms = (time.perf_counter() - start) / 50 * 1000
        return {
            "statuses": sorted(set(statuses)),
            "ms_per_request": round(ms, 2),
            "log_lines_per_request": (service.log_lines() - lines) / 50,
            "answer": http("POST", "/v2/models/digits-cnn/infer", DEEP, JSON)[1][:90].decode(),
        }
    finally:
        service.close()


def flood(repo: Path, seconds: float = 10) -> dict[str, Any]:
    wrk = ensure_wrk()
    bodies = golden_bodies(REPO / "models/digits/model.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        normal = write_script(Path(tmp), "normal.lua", bodies["predict"])
        bad = write_script(Path(tmp), "bad.lua", DEEP)
        service = Service(repo)
        try:
            url = f"{service.url}/predict"
            run_wrk(wrk, normal, url, 1, 2)  # warm-up
            alone = run_wrk(wrk, normal, url, 1, seconds)
            result: dict[str, Any] = {}

            def attack() -> None:
                result["flood"] = run_wrk(
                    wrk, bad, f"{service.url}/v2/models/digits-cnn/infer", 8, seconds + 2
                )

            thread = threading.Thread(target=attack)
            thread.start()
            time.sleep(1)
            during = run_wrk(wrk, normal, url, 1, seconds)
            thread.join()
        finally:
            service.close()
    return {
        "normal_alone_rps": round(alone["rps"]),
        "normal_during_flood_rps": round(during["rps"]),
        "slowdown": round(alone["rps"] / max(during["rps"], 1e-9), 2),
        "normal_p99_ms": [alone["p99_ms"], during["p99_ms"]],
        "normal_non_2xx_or_errors": during["non_2xx"] + during["errors"],
        "flood_rps": round(result["flood"]["rps"]),
        "load_average": os.getloadavg()[0],
    }


def _send_header(size: int) -> int:
    with socket.create_connection(("127.0.0.1", PORT), timeout=60) as sock:
        try:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
            sock.sendall(b"a" * size + b"\r\n\r\n")
            answer = sock.recv(100)
        except OSError:
            return 0
    return int(answer.split()[1]) if answer else 0


def header(repo: Path) -> dict[str, Any]:
    service = Service(repo)
    try:
        before = rss_mib(service.proc.pid)
        one = _send_header(64 << 20)
        after_one = rss_mib(service.proc.pid)
        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda: statuses.append(_send_header(48 << 20)))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {
            "64MiB_status": one,
            "rss_growth_mib_after_one": round(after_one - before, 1),
            "4x48MiB_statuses": sorted(statuses),
            "rss_growth_mib_after_all": round(rss_mib(service.proc.pid) - before, 1),
        }
    finally:
        service.close()


def _closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(65536, socket.MSG_PEEK)  # EOF, or the server's last answer before closing
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def idle(repo: Path, wait: float = 20, body_wait: float = 35) -> dict[str, Any]:
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )
    service = Service(repo)
    try:
        groups: dict[str, list[socket.socket]] = {"idle": [], "half_sent": [], "stalled_body": []}
        for _ in range(1000):
            groups["idle"].append(socket.create_connection(("127.0.0.1", PORT)))
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", PORT))
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            groups["half_sent"].append(sock)
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", PORT))
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            groups["stalled_body"].append(sock)
        probe = http("GET", "/health/ready")[0]
        start = time.monotonic()
        closed: dict[str, str] = {}
        for name, after in (("idle", wait), ("half_sent", wait), ("stalled_body", body_wait)):
            time.sleep(max(0.0, after - (time.monotonic() - start)))
            socks = groups[name]
            closed[f"{name}_closed_within_{after:g}s"] = f"{sum(map(_closed, socks))}/{len(socks)}"
        for socks in groups.values():
            for sock in socks:
                sock.close()
        return {**closed, "probe_while_held": probe}
    finally:
        service.close()


def fdlimit(repo: Path, env: dict[str, str]) -> dict[str, Any]:
    service = Service(repo, env, nofile=256)
    try:
        held = [socket.create_connection(("127.0.0.1", PORT)) for _ in range(300)]
        time.sleep(0.5)
        probes = [http("GET", "/health/ready")[0] for _ in range(5)]
        for sock in held:
            sock.close()
        return {"fd_limit": 256, "connections_held": 300, "probe_statuses": probes}
    finally:
        service.close()


def _v2(first: str = "0", shape: str = "[1,1,8,8]", extra: str = "") -> str:
    """A V2 infer body whose first value is the literal ``first``."""
    data = ",".join([first] + ["0"] * 63)
    return (
        f'{{"inputs":[{{"name":"input","shape":{shape},"datatype":"FP32",{extra}'
        f'"data":[{data}]}}]}}'
    )


def _grid(value: str) -> str:
    """A /predict body: an 8x8 image whose first column holds the literal ``value``."""
    rows = ",".join(f"[{value}" + ",0" * 7 + "]" for _ in range(8))
    return f'{{"image": [{rows}]}}'


def statuses(repo: Path) -> dict[str, Any]:
    v2 = "/v2/models/digits-cnn/infer"
    cases = {
        "v2 NaN": (v2, _v2("NaN")),
        "v2 Infinity": (v2, _v2("Infinity")),
        "v2 1e40": (v2, _v2("1e40")),
        "v2 1e400": (v2, _v2("1e400")),
        "v2 wrong shape": (v2, _v2(shape="[1,64]")),
        "v2 parameters: 5": (v2, _v2(extra='"parameters":5,')),
        "predict 1e40": ("/predict", _grid("1e40")),
        "predict 1e400": ("/predict", _grid("1e400")),
        "predict NaN": ("/predict", _grid("NaN")),
        'predict {"image": "NaN': ("/predict", '{"image": "NaN'),
    }
    service = Service(repo)
    try:
        return {
            name: http("POST", path, body.encode(), JSON)[0] for name, (path, body) in cases.items()
        }
    finally:
        service.close()


def echo(repo: Path) -> dict[str, Any]:
    secret = "s3cr3t-value"
    v2 = "/v2/models/digits-cnn/infer"
    named = json.dumps(
        {"inputs": [{"name": {"secret": secret}, "shape": [1, 1, 8, 8], "datatype": "FP32"}]}
    )
    cases = {
        "input name": (v2, named, JSON),
        "unknown key": ("/predict", json.dumps({"image": [], secret: 1}), JSON),
        "model name": (f"/v2/models/{secret}/infer", '{"inputs": []}', JSON),
        "content type": ("/predict", "{}", {"Content-Type": f"text/{secret}"}),
        "output name": (v2, json.dumps({"inputs": [], "outputs": [{"name": secret}]}), JSON),
    }
    service = Service(repo)
    try:
        return {
            name: secret in http("POST", path, body.encode(), headers)[1].decode()
            for name, (path, body, headers) in cases.items()
        }
    finally:
        service.close()


def startup(repo: Path) -> dict[str, Any]:
    """The startup refusals (``hostile_startup.py``, which imports this module)."""
    from hostile_startup import startup as run

    return run(repo)


SCENARIOS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "nesting": nesting,
    "flood": flood,
    "header": header,
    "idle": idle,
    "fdlimit": lambda repo: fdlimit(repo, {"MAX_CONNECTIONS": "150"}),
    "statuses": statuses,
    "echo": echo,
    "startup": startup,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to run")
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    for name in args.scenarios:
        result = SCENARIOS[name](args.repo.resolve())
        print(json.dumps({"scenario": name, "repo": str(args.repo), **result}), flush=True)


if __name__ == "__main__":
    main()
