"""Shared by the load benchmarks: servers pinned to a core, ``wrk`` runs, process facts.

Servers run on core 0 (``taskset -c 0``), ``wrk`` on core 1. ``wrk`` comes from
Debian (``apt-get install wrk``; installed on the fly when run as root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SERVER_CORE, CLIENT_CORE = "0", "1"

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def ensure_wrk() -> str:
    """The path of ``wrk``, installing Debian's package when possible."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk with apt-get ...", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL
        )
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("error: wrk not found; install it (apt-get install wrk)")
    return found


def write_script(folder: Path, name: str, body: bytes) -> Path:
    """A wrk Lua script that POSTs ``body`` as JSON."""
    script = folder / name
    script.write_text(LUA % body.decode())
    return script


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` (and, with workers, of its children) in MiB."""
    total = 0.0
    for proc in [pid, *children(pid)]:
        for line in Path(f"/proc/{proc}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 60) -> float:
    """Seconds until ``url/health/ready`` answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"error: server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.005)
    raise SystemExit(f"error: {url} not ready after {timeout} s")


def start(command: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen[bytes]:
    """``command`` pinned to the server core."""
    return subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *command],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_wrk(wrk: str, script: Path, url: str, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run against ``url`` (a full URL); its figures."""
    out = subprocess.run(
        [
            "taskset",
            "-c",
            CLIENT_CORE,
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line.removeprefix("RESULT "))
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "concurrency": connections,
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
        "non_2xx": raw["status"],
        "requests": raw["requests"],
    }


def measured_run(
    wrk: str, script: Path, proc: subprocess.Popen[bytes], url: str, c: int, seconds: float
) -> dict[str, Any]:
    """``run_wrk`` plus the server's CPU time per request."""
    before = cpu_seconds(proc.pid)
    run = run_wrk(wrk, script, url, c, seconds)
    run["cpu_us_per_request"] = (cpu_seconds(proc.pid) - before) / max(run["requests"], 1) * 1e6
    return run


def golden_bodies(model: Path) -> dict[str, bytes]:
    """``/predict`` and V2 infer bodies holding the model's first golden sample."""
    sys.path.insert(0, str(REPO))
    from bnfold.digest import read_card
    from service.schemas import infer_example, sample_example

    card = read_card(Path(model).read_bytes())
    infer = infer_example(card)
    infer.pop("id", None)
    return {
        "predict": json.dumps(sample_example(card)).encode(),
        "infer": json.dumps(infer).encode(),
    }
