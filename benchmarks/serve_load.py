"""Load benchmark of ``POST /predict``: the service vs a plain FastAPI + PyTorch baseline.

Not a test: it prints figures (and writes them as JSON with ``--out``). In one
run it measures, for the service (``python -m service``, one uvicorn worker)
and for ``benchmarks/baseline_server.py`` (sync and async endpoints):

- time from process start to the first 200 on ``/health/ready`` (median of 5);
- resident memory (VmRSS) when idle and after the load;
- throughput, p50/p99 latency, errors and server CPU time per request at each
  concurrency, with ``wrk``.

The machine may be shared, so the servers run side by side (idle ones cost
nothing) and the wrk runs are interleaved: every round measures every server at
every concurrency, and the report gives medians over the rounds and the median
of the per-round ratios. CPU time per request hardly depends on other load,
unlike requests per second: it is reported as the steadier comparison.

Every server is pinned to core 0 (``taskset -c 0``), ``wrk`` and this script to
core 1. Needs two cores, ``taskset`` and ``wrk`` (``apt-get install wrk``; the
script installs it when run as root on Debian). Without ``--synthetic`` it uses
``artifacts/digits/model.onnx`` and ``artifacts/digits/checkpoint.pt`` (``python -m
training all``); ``--synthetic`` builds a digits-sized CNN (32, 64, 128 channels)
for both sides instead (random weights; same layers and sizes).

    .venv/bin/python benchmarks/serve_load.py --duration 10 --out /tmp/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
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


def synthetic_model(folder: Path) -> Path:
    """A digits-sized bnfold ONNX file built by the service tests' fixture builder."""
    sys.path.insert(0, str(REPO / "tests" / "service"))
    import svc_models

    model, _ = svc_models.image_model(channels=(32, 64, 128))
    return svc_models.save(model, folder / "synthetic.onnx")


def request_body(model_path: Path) -> bytes:
    """A ``/predict`` body holding the model's first golden sample."""
    sys.path.insert(0, str(REPO))
    from bnfold.digest import read_card
    from service.schemas import sample_example

    return json.dumps(sample_example(read_card(Path(model_path).read_bytes()))).encode()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 60) -> float:
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


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *command],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_wrk(wrk: str, script: Path, url: str, connections: int, seconds: float) -> dict[str, Any]:
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
            f"{url}/predict",
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


def startup(command: list[str], env: dict[str, str], port: int, times: int) -> list[float]:
    """Seconds from spawn to ready, ``times`` times."""
    seconds = []
    for _ in range(times):
        proc = start(command, env)
        seconds.append(wait_ready(proc, f"http://127.0.0.1:{port}"))
        stop(proc)
    return seconds


def one_run(
    wrk: str, script: Path, proc: subprocess.Popen[bytes], url: str, c: int, seconds: float
) -> dict[str, Any]:
    before = cpu_seconds(proc.pid)
    run = run_wrk(wrk, script, url, c, seconds)
    run["cpu_us_per_request"] = (cpu_seconds(proc.pid) - before) / max(run["requests"], 1) * 1e6
    return run


def summarize(name: str, runs: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds per concurrency (errors summed)."""
    by_c: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        by_c.setdefault(run["concurrency"], []).append(run)
    summary = []
    for c, group in sorted(by_c.items()):
        med = {
            k: statistics.median(r[k] for r in group)
            for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")
        }
        med.update(
            concurrency=c,
            errors=sum(r["errors"] for r in group),
            non_2xx=sum(r["non_2xx"] for r in group),
            rounds=len(group),
        )
        summary.append(med)
    return {"name": name, **extra, "runs": summary, "all_runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "artifacts/digits/model.onnx")
    parser.add_argument("--checkpoint", type=Path, default=REPO / "artifacts/digits/checkpoint.pt")
    parser.add_argument("--synthetic", action="store_true", help="digits-sized random models")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--startups", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--baselines", nargs="+", default=["sync", "async"], choices=["sync", "async"]
    )
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("error: needs two CPU cores (server on 0, load generator on 1)")
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    wrk = ensure_wrk()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.synthetic:
            model, source = synthetic_model(folder), ["--synthetic"]
        else:
            if not (args.model.is_file() and args.checkpoint.is_file()):
                raise SystemExit(
                    "error: no model/checkpoint (python -m training all), or pass --synthetic"
                )
            model, source = args.model, ["--checkpoint", str(args.checkpoint)]
        script = folder / "post.lua"
        script.write_text(LUA % request_body(model).decode())
        servers = [
            (
                "service",
                [PYTHON, "-m", "service", "--port", str(args.port)],
                {"MODEL_PATH": str(model), "LOG_LEVEL": "warning"},
                args.port,
            )
        ]
        for i, endpoint in enumerate(args.baselines, start=1):
            command = [
                PYTHON,
                "benchmarks/baseline_server.py",
                *source,
                "--endpoint",
                endpoint,
                "--port",
                str(args.port + i),
            ]
            servers.append((f"baseline-{endpoint}", command, {}, args.port + i))
        load_before = os.getloadavg()
        startups = {
            name: startup(cmd, env, port, args.startups) for name, cmd, env, port in servers
        }
        procs = {name: start(cmd, env) for name, cmd, env, _ in servers}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in procs}
        rss: dict[str, dict[str, float]] = {}
        try:
            for name, _, _, port in servers:
                wait_ready(procs[name], f"http://127.0.0.1:{port}")
                rss[name] = {"rss_idle_mib": rss_mib(procs[name].pid)}
                run_wrk(wrk, script, f"http://127.0.0.1:{port}", 16, args.warmup)
            for _ in range(args.rounds):
                for c in args.concurrency:
                    for name, _, _, port in servers:
                        url = f"http://127.0.0.1:{port}"
                        runs[name].append(one_run(wrk, script, procs[name], url, c, args.duration))
            for name in procs:
                rss[name]["rss_after_mib"] = rss_mib(procs[name].pid)
        finally:
            for proc in procs.values():
                stop(proc)
    results = [
        summarize(
            name,
            runs[name],
            {
                "startup_s": statistics.median(startups[name]),
                "startup_all_s": startups[name],
                **rss[name],
            },
        )
        for name in procs
    ]
    report = {
        "model": "synthetic digits-sized CNN" if args.synthetic else str(args.model),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "results": results,
        "ratios": ratios(results, args.concurrency),
    }
    print_report(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


def ratios(results: list[dict[str, Any]], concurrencies: list[int]) -> dict[str, Any]:
    """Per concurrency: median over rounds of service / best baseline of that round."""
    service, baselines = results[0], results[1:]
    out: dict[str, Any] = {}
    if not baselines:
        return out
    for c in concurrencies:
        mine = [r for r in service["all_runs"] if r["concurrency"] == c]
        theirs = [[r for r in b["all_runs"] if r["concurrency"] == c] for b in baselines]
        rps = [m["rps"] / max(t[i]["rps"] for t in theirs) for i, m in enumerate(mine)]
        cpu = [
            min(t[i]["cpu_us_per_request"] for t in theirs) / m["cpu_us_per_request"]
            for i, m in enumerate(mine)
        ]
        out[str(c)] = {
            "rps": statistics.median(rps),
            "cpu": statistics.median(cpu),
            "rps_rounds": rps,
            "cpu_rounds": cpu,
        }
    return out


def print_report(report: dict[str, Any]) -> None:
    print(
        f"model: {report['model']}; {report['rounds']} interleaved rounds of "
        f"{report['duration_s']:g} s; load average before {report['load_before'][0]:.2f}, "
        f"after {report['load_after'][0]:.2f} ({report['cpus']} CPUs)"
    )
    print(
        f"{'server':16} {'start s':>8} {'RSS MiB':>8} {'conc':>5} {'req/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>7} {'non2xx':>7} {'CPU us/req':>10}"
    )
    for r in report["results"]:
        for run in r["runs"]:
            print(
                f"{r['name']:16} {r['startup_s']:8.3f} {r['rss_after_mib']:8.1f} "
                f"{run['concurrency']:5d} {run['rps']:9.0f} {run['p50_ms']:8.2f} "
                f"{run['p99_ms']:8.2f} {run['errors']:7d} {run['non_2xx']:7d} "
                f"{run['cpu_us_per_request']:10.0f}"
            )
    for c, ratio in report["ratios"].items():
        print(
            f"concurrency {c}: service / best baseline = {ratio['rps']:.2f}x req/s "
            f"(rounds: {', '.join(f'{x:.2f}' for x in ratio['rps_rounds'])}), "
            f"{ratio['cpu']:.2f}x less CPU per request"
        )


if __name__ == "__main__":
    main()
