"""Load benchmark of ``POST /predict``: the service between a ceiling and a baseline.

Not a test: it prints figures (and writes them as JSON with ``--out``). In one
run, on the same model file, it measures

- the service (``python -m service``, one uvicorn worker, every limit on);
- the ceiling: ``benchmarks/bare_server.py``, Starlette + ONNX Runtime with
  orjson in and out and nothing else (no validation, no metrics, no limits);
- the baseline: ``benchmarks/baseline_server.py``, FastAPI + pydantic + the
  unfolded PyTorch eval model (sync and async endpoints; the better one counts);
- optionally (``--before DIR``) the service of another checkout, e.g. the
  commit before a change, on that checkout's own default model;

and for each: time from process start to the first 200 on ``/health/ready``
(median of ``--startups``), resident memory idle and after the load, and, with
``wrk`` at each concurrency, throughput, p50/p99 latency, errors and server
CPU time per request.

The machine may be shared, so the servers run side by side (idle ones cost
nothing) and the wrk runs are interleaved: every round measures every server at
every concurrency, and the report gives medians over the rounds and the median
of the per-round ratios. CPU time per request hardly depends on other load,
unlike requests per second: it is reported as the steadier comparison.

Every server is pinned to core 0, ``wrk`` and this script to core 1
(``benchmarks/loadgen.py``). Without ``--synthetic`` it uses
``artifacts/digits/model.onnx`` and ``artifacts/digits/checkpoint.pt``;
``--synthetic`` builds a digits-sized CNN (32, 64, 128 channels) for every side.

    .venv/bin/python benchmarks/serve_load.py --model models/digits/model.onnx \\
        --checkpoint models/digits/checkpoint.pt --concurrency 16 --out /tmp/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import (
    CLIENT_CORE,
    REPO,
    ensure_wrk,
    golden_bodies,
    measured_run,
    rss_mib,
    run_wrk,
    start,
    stop,
    wait_ready,
    write_script,
)

PYTHON = sys.executable


def synthetic_model(folder: Path) -> Path:
    """A digits-sized bnfold ONNX file built by the service tests' fixture builder."""
    sys.path.insert(0, str(REPO / "tests" / "service"))
    import svc_models

    model, _ = svc_models.image_model(channels=(32, 64, 128))
    return svc_models.save(model, folder / "synthetic.onnx")


def startup(server: dict[str, Any], times: int) -> list[float]:
    """Seconds from spawn to ready, ``times`` times."""
    seconds = []
    for _ in range(times):
        proc = start(server["command"], server["env"], server["cwd"])
        seconds.append(wait_ready(proc, server["url"]))
        stop(proc)
    return seconds


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
    return summary


def servers(args: argparse.Namespace, model: Path, source: list[str]) -> list[dict[str, Any]]:
    """Every server of the run: name, command, environment, working directory, URL."""
    port = args.port
    found: list[dict[str, Any]] = []

    def add(name: str, command: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        url = f"http://127.0.0.1:{port + len(found)}"
        command = [*command, "--port", str(port + len(found))]
        found.append({"name": name, "command": command, "env": env, "cwd": cwd, "url": url})

    service_env = {"MODEL_PATH": str(model), "LOG_LEVEL": "warning"}
    add("service", [PYTHON, "-m", "service"], service_env)
    add("ceiling", [PYTHON, "benchmarks/bare_server.py", "--model", str(model)], {})
    for endpoint in args.baselines:
        command = [PYTHON, "benchmarks/baseline_server.py", *source, "--endpoint", endpoint]
        add(f"baseline-{endpoint}", command, {})
    if args.before:
        before = args.before.resolve()
        env = {
            "MODEL_PATH": str(before / "models/digits/model.onnx"),
            "LOG_LEVEL": "warning",
            "PYTHONPATH": str(before),
        }
        add("service-before", [PYTHON, "-m", "service"], env, before)
    return found


def ratios(results: dict[str, Any], concurrencies: list[int]) -> dict[str, Any]:
    """Per concurrency, medians over rounds of: service / ceiling, service / best baseline,
    and service / service-before when measured (req/s; CPU per request the other way up)."""

    def rounds(name: str, c: int) -> list[dict[str, Any]]:
        return [r for r in results[name]["all_runs"] if r["concurrency"] == c]

    baselines = [n for n in results if n.startswith("baseline-")]
    out: dict[str, Any] = {}
    for c in concurrencies:
        mine = rounds("service", c)
        entry: dict[str, Any] = {}
        others = {"ceiling": ["ceiling"], "baseline": baselines}
        if "service-before" in results:
            others["before"] = ["service-before"]
        for label, names in others.items():
            theirs = [rounds(n, c) for n in names]
            rps = [m["rps"] / max(t[i]["rps"] for t in theirs) for i, m in enumerate(mine)]
            cpu = [
                min(t[i]["cpu_us_per_request"] for t in theirs) / m["cpu_us_per_request"]
                for i, m in enumerate(mine)
            ]
            entry[label] = {
                "rps": statistics.median(rps),
                "cpu": statistics.median(cpu),
                "rps_rounds": rps,
            }
        out[str(c)] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "artifacts/digits/model.onnx")
    parser.add_argument("--checkpoint", type=Path, default=REPO / "artifacts/digits/checkpoint.pt")
    parser.add_argument("--synthetic", action="store_true", help="digits-sized random models")
    parser.add_argument("--before", type=Path, help="also measure this checkout's service")
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
            model, source = args.model.resolve(), ["--checkpoint", str(args.checkpoint)]
        script = write_script(folder, "post.lua", golden_bodies(model)["predict"])
        found = servers(args, model, source)
        load_before = os.getloadavg()
        startups = {s["name"]: startup(s, args.startups) for s in found}
        procs = {s["name"]: start(s["command"], s["env"], s["cwd"]) for s in found}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in procs}
        rss: dict[str, dict[str, float]] = {}
        try:
            for server in found:
                proc = procs[server["name"]]
                wait_ready(proc, server["url"])
                rss[server["name"]] = {"rss_idle_mib": rss_mib(proc.pid)}
                run_wrk(wrk, script, f"{server['url']}/predict", 16, args.warmup)
            for _ in range(args.rounds):
                for c in args.concurrency:
                    for server in found:
                        name, url = server["name"], f"{server['url']}/predict"
                        runs[name].append(
                            measured_run(wrk, script, procs[name], url, c, args.duration)
                        )
            for name, proc in procs.items():
                rss[name]["rss_after_mib"] = rss_mib(proc.pid)
        finally:
            for proc in procs.values():
                stop(proc)
    results = {
        name: {
            "startup_s": statistics.median(startups[name]),
            "startup_all_s": startups[name],
            **rss[name],
            "runs": summarize(runs[name]),
            "all_runs": runs[name],
        }
        for name in procs
    }
    report = {
        "model": "synthetic digits-sized CNN" if args.synthetic else str(model),
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
    for name, r in report["results"].items():
        for run in r["runs"]:
            print(
                f"{name:16} {r['startup_s']:8.3f} {r['rss_after_mib']:8.1f} "
                f"{run['concurrency']:5d} {run['rps']:9.0f} {run['p50_ms']:8.2f} "
                f"{run['p99_ms']:8.2f} {run['errors']:7d} {run['non_2xx']:7d} "
                f"{run['cpu_us_per_request']:10.0f}"
            )
    for c, entry in report["ratios"].items():
        for label, ratio in entry.items():
            print(
                f"concurrency {c}: service / {label} = {ratio['rps']:.2f}x req/s "
                f"(rounds: {', '.join(f'{x:.2f}' for x in ratio['rps_rounds'])}); "
                f"CPU per request {label} / service = {ratio['cpu']:.2f}"
            )


if __name__ == "__main__":
    main()
