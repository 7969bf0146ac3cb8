"""Zero-downtime model swap under load: SIGHUP in the middle of ``wrk`` traffic.

Not a test: it prints figures (and writes them as JSON with ``--out``). Model A is
the committed digits checkpoint exported with its drift monitor; model B is A
recalibrated (``recalibrate``) on its own unlabelled training split: another version
with a monitor and the same input ranges, so that both do the same work per request
(a model recalibrated on shifted data would answer the benchmark's clean sample with
out-of-range ``warnings``, which costs more, not the swap). For ``--workers`` 1 and 2:

- ``python -m service`` serves A from ``MODEL_PATH`` (pinned to core 0);
- ``wrk`` (core 1) posts a golden sample to ``/predict`` for ``--duration`` seconds at
  ``--concurrency`` connections, one per wrk thread, so that the Lua script sees each
  connection's responses in order and records the model versions they carry;
- at 1/3 of the run, B replaces the file (``os.replace``) and the server gets SIGHUP;
  at 2/3, a corrupt file (B cut in half, as an interrupted copy leaves it) replaces it
  and the server gets SIGHUP again: that reload must be refused, B keeps serving.

Reported: requests, failed requests (socket errors and timeouts) and non-2xx
responses (both must be 0), per connection the versions in the order seen and how
often they changed (exactly once, A then B, for every connection), the reload log
lines (one success and one refusal per worker), ``bnfold_model_reloads_total`` and
the version ``/model`` reports afterwards. ``--baseline``: each load again without
the reloads (model A throughout), for the throughput and latency ratios.

    python -m benchmarks.bench_swap [--duration 30] [--concurrency 32] [--baseline] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_drift import DIGITS_CHECKPOINT
from benchmarks.loadgen import CLIENT_CORE, SERVER_CORE, ensure_wrk, golden_bodies, wait_ready
from bnfold import digest
from training.checkpoint import load_checkpoint
from training.data import load_splits
from training.export import export_checkpoint
from training.recalibrate import recalibrate_checkpoint

REPO = Path(__file__).resolve().parents[1]

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) n = 0; bad = 0; switches = 0; last = ""; order = "" end
function response(status, headers, body)
  n = n + 1
  local version = string.match(body, '"model_version"%%s*:%%s*"(%%x+)"')
  if status < 200 or status > 299 or version == nil then bad = bad + 1; return end
  if version ~= last then
    if last ~= "" then switches = switches + 1 end
    order = order .. version .. " "
    last = version
  end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format('\\nCONN {"responses":%%d,"bad":%%d,"switches":%%d,"order":"%%s"}\\n',
      t:get("n"), t:get("bad"), t:get("switches"), t:get("order")))
  end
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def models(folder: Path) -> tuple[Path, Path, bytes]:
    """Model A (the committed checkpoint exported with its drift monitor), model B (A
    recalibrated on its own training split: another version, the same work per request)
    and a corrupt copy of B."""
    a = export_checkpoint(DIGITS_CHECKPOINT, folder / "a").path
    splits = load_splits(load_checkpoint(DIGITS_CHECKPOINT).data_spec)
    target = folder / "train.npz"
    np.savez(target, X=splits.train.X)
    b = recalibrate_checkpoint(DIGITS_CHECKPOINT, target, folder / "b", parent=a, verify_samples=64)
    data = b.export.path.read_bytes()
    return a, b.export.path, data[: len(data) // 2]


def replace_file(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` in one rename, as an operator's deploy step should."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def reload_counts(url: str, samples: int) -> list[dict[str, float]]:
    """``bnfold_model_reloads_total`` by result, as ``samples`` fresh connections see it
    (with several workers, each answers for itself)."""
    pattern = re.compile(r'^bnfold_model_reloads_total\{result="(\w+)"\} (\S+)$', re.M)
    seen = []
    for _ in range(samples):
        text = get(f"{url}/metrics").decode()
        seen.append({k: float(v) for k, v in pattern.findall(text)})
    return seen


def one(
    workers: int,
    model_a: Path,
    model_b: Path,
    corrupt: bytes,
    args: argparse.Namespace,
    swap: bool = True,
) -> dict[str, Any]:
    """One loaded run with two SIGHUP reloads (B, then a corrupt file); ``swap=False``: the
    same run without them (the baseline)."""
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        serving = folder / "model.onnx"
        shutil.copyfile(model_a, serving)
        script = folder / "swap.lua"
        script.write_text(LUA % golden_bodies(model_a)["predict"].decode())
        log = folder / "service.log"
        url = f"http://127.0.0.1:{args.port}"
        with open(log, "wb") as sink:
            command = [sys.executable, "-m", "service", "--port", str(args.port)]
            server = subprocess.Popen(
                ["taskset", "-c", SERVER_CORE, *command, "--workers", str(workers)],
                cwd=REPO,
                env={**os.environ, "MODEL_PATH": str(serving), "LOG_LEVEL": "info"},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_ready(server, url, timeout=120)
            events: list[tuple[float, str]] = []

            def swaps(start: float) -> None:
                if not swap:
                    return
                for at, data, what in (
                    (args.duration / 3, model_b.read_bytes(), "B"),
                    (2 * args.duration / 3, corrupt, "corrupt"),
                ):
                    time.sleep(max(0.0, start + at - time.monotonic()))
                    replace_file(serving, data)
                    server.send_signal(signal.SIGHUP)
                    events.append((time.monotonic() - start, what))

            start = time.monotonic()
            timer = threading.Thread(target=swaps, args=(start,))
            timer.start()
            load = [f"-t{args.concurrency}", f"-c{args.concurrency}", f"-d{args.duration}s"]
            load += ["--timeout", "5s", "-s", str(script), f"{url}/predict"]
            out = subprocess.run(
                ["taskset", "-c", CLIENT_CORE, wrk, *load],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            timer.join()
            final = {json.loads(get(f"{url}/model"))["model_version"] for _ in range(8)}
            reloads = reload_counts(url, 8)
        finally:
            server.terminate()
            server.wait(timeout=60)
        lines = log.read_text(errors="replace").splitlines()
    result = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
    conns = [json.loads(x[5:]) for x in out.splitlines() if x.startswith("CONN ")]
    version_a = digest.check(model_a.read_bytes()).version
    version_b = digest.check(model_b.read_bytes()).version
    want = f"{version_a} {version_b} "
    return {
        "workers": workers,
        "swaps": swap,
        "requests": result["requests"],
        "rps": result["requests"] / (result["duration_us"] / 1e6),
        "p99_ms": result["p99_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "failed": result["connect"] + result["read"] + result["write"] + result["timeout"],
        "non_2xx": result["status"],
        "bad_responses": sum(c["bad"] for c in conns),
        "connections": len(conns),
        "connections_switched_once_a_then_b": sum(
            c["switches"] == 1 and c["order"] == want for c in conns
        ),
        "connections_a_only": sum(c["order"] == f"{version_a} " for c in conns),
        "max_switches": max(c["switches"] for c in conns),
        "versions": {"A": version_a, "B": version_b},
        "final_model_version": sorted(final),
        "reloads_metric": reloads,
        "reload_log": [line for line in lines if "reload" in line.lower()],
        "events": events,
    }


def main() -> None:
    """Run for each worker count and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument(
        "--baseline", action="store_true", help="also run each without the swaps, for the ratio"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        model_a, model_b, corrupt = models(Path(tmp))
        for workers in args.workers:
            for swap in (True, False) if args.baseline else (True,):
                runs.append(one(workers, model_a, model_b, corrupt, args, swap))
                show(runs[-1])
            if args.baseline:
                with_swaps, without = runs[-2], runs[-1]
                print(
                    f"  ratio with/without reloads: "
                    f"req/s {with_swaps['rps'] / without['rps']:.3f}, "
                    f"p99 {with_swaps['p99_ms'] / without['p99_ms']:.3f}"
                )
    if args.out:
        args.out.write_text(json.dumps(runs, indent=2))


def show(run: dict[str, Any]) -> None:
    """One run in a few lines."""
    kind = "with 2 SIGHUP reloads" if run["swaps"] else "baseline, no reload"
    print(
        f"WORKERS={run['workers']} ({kind}): {run['requests']} requests, "
        f"{run['rps']:.0f}/s, p99 {run['p99_ms']:.1f} ms, max {run['max_ms']:.1f} ms; "
        f"failed {run['failed']}, non-2xx {run['non_2xx']}, bad bodies {run['bad_responses']}"
    )
    if run["swaps"]:
        print(
            f"  connections A->B exactly once: {run['connections_switched_once_a_then_b']}/"
            f"{run['connections']} (most switches on one: {run['max_switches']}); "
            f"/model after: {run['final_model_version']}; reloads_total per worker: "
            f"{run['reloads_metric'][0]}"
        )
        for line in run["reload_log"]:
            print("  log:", line.split(" service: ", 1)[-1])


if __name__ == "__main__":
    main()
