"""SIGTERM under load: does the service finish every request it accepted, and exit 0?

Not a test (``tests/service/test_drain.py`` runs a short version of it). It
starts ``python -m service``, drives ``POST /predict`` from ``--connections``
keep-alive connections (a closed loop: each sends its next request when the
answer to the last one is in), sends SIGTERM after ``--before`` seconds and
counts, per request sent:

- answered: a complete HTTP response (200 or not: non-200 are counted apart);
- failed: the connection closed or reset after the request was written, or the
  write itself failed: a request the server dropped;
- refused (not a failure): connecting after the server stopped accepting.

A response with ``Connection: close`` closes its connection; the client then
reconnects, as a real client does. Reports the exit status and the seconds
from SIGTERM to exit, for each ``--workers`` value.

    .venv/bin/python benchmarks/drain.py --workers 1 2 --connections 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Counts:
    """What happened to the requests of one run."""

    sent: int = 0
    answered: int = 0
    non_200: int = 0
    failed: int = 0
    refused: int = 0
    closed_by_server: int = 0  # responses carrying Connection: close
    answered_after_sigterm: int = 0


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the server closes the connection) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "") == "close"


async def _client(
    host: str, port: int, request: bytes, counts: Counts, stop: float, term: list[float]
) -> None:
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < stop:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                counts.refused += 1
                await asyncio.sleep(0.02)
                continue
        counts.sent += 1
        try:
            writer.write(request)
            await writer.drain()
            status, close = await asyncio.wait_for(_response(reader), 30)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            counts.failed += 1
            writer.close()
            writer = None
            continue
        counts.answered += 1
        counts.non_200 += status != 200
        if term:
            counts.answered_after_sigterm += 1
        if close:
            counts.closed_by_server += 1
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def load(
    host: str, port: int, request: bytes, connections: int, seconds: float, term: list[float]
) -> Counts:
    """``connections`` closed-loop clients for ``seconds``; ``term`` gets a value at SIGTERM."""
    counts = Counts()
    stop = time.monotonic() + seconds
    await asyncio.gather(
        *(_client(host, port, request, counts, stop, term) for _ in range(connections))
    )
    return counts


def predict_request(model: Path) -> bytes:
    """A keep-alive ``POST /predict`` with the model's first golden sample."""
    sys.path.insert(0, str(REPO))
    from bnfold.digest import read_card
    from service.schemas import sample_example

    body = json.dumps(sample_example(read_card(model.read_bytes()))).encode()
    return (
        b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("error: the service did not get ready")


def run(
    model: Path,
    port: int,
    workers: int,
    connections: int,
    before: float,
    after: float,
    env: dict[str, str] | None = None,
    repo: Path = REPO,
    body_from: Path | None = None,
) -> dict[str, object]:
    """One run: start, load, SIGTERM after ``before`` s, keep loading ``after`` s more."""
    environ = {**os.environ, "MODEL_PATH": str(model), "LOG_LEVEL": "warning"}
    environ.update({"WORKERS": str(workers), "PYTHONPATH": str(repo), **(env or {})})
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
        cwd=repo,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(port, proc)
        term: list[float] = []
        request = predict_request(body_from or model)

        async def main() -> tuple[Counts, int, float]:
            task = asyncio.create_task(
                load("127.0.0.1", port, request, connections, before + after, term)
            )
            await asyncio.sleep(before)
            start = time.monotonic()
            term.append(start)
            proc.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(proc.wait, 120)
            seconds = time.monotonic() - start
            return await task, status, seconds

        counts, status, exit_seconds = asyncio.run(main())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = ""
    if proc.stderr:
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    return {
        "workers": workers,
        "connections": connections,
        "exit_status": status,
        "exit_seconds": round(exit_seconds, 3),
        **asdict(counts),
        "stderr": stderr.splitlines()[-5:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models/digits/model.onnx")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to run")
    parser.add_argument(
        "--body-from",
        type=Path,
        default=REPO / "models/digits/model.onnx",
        help="the model whose golden sample is the request (its card must be readable here)",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--before", type=float, default=3.0, help="seconds of load before SIGTERM")
    parser.add_argument("--after", type=float, default=4.0, help="seconds of load after it")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--port", type=int, default=18090)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    for workers in args.workers:
        for _ in range(args.rounds):
            result = run(
                args.model.resolve(),
                args.port,
                workers,
                args.connections,
                args.before,
                args.after,
                repo=args.repo.resolve(),
                body_from=args.body_from,
            )
            print(json.dumps(result))


if __name__ == "__main__":
    main()
