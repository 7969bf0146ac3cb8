"""Soak: long wrk runs on ``/predict`` and V2 infer; errors and resident-memory growth.

Not a test. Starts ``python -m service`` (one worker, pinned to core 0), warms
each route up for ``--warmup`` seconds at the run's concurrency (so that the
allocator's pools exist), records the resident memory, runs wrk for the given
seconds, and records it again. Reports requests, errors, non-2xx and the RSS
growth in percent of the warmed-up RSS.

    .venv/bin/python benchmarks/soak.py --predict 60 --infer 30 --concurrency 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models/digits/model.onnx")
    parser.add_argument("--predict", type=float, default=60, help="seconds on /predict")
    parser.add_argument("--infer", type=float, default=30, help="seconds on V2 infer")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--port", type=int, default=18200)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    wrk = ensure_wrk()
    model = args.model.resolve()
    bodies = golden_bodies(model)
    from bnfold.digest import read_card

    name = read_card(model.read_bytes()).name
    url = f"http://127.0.0.1:{args.port}"
    routes = [
        ("predict", "/predict", args.predict),
        ("infer", f"/v2/models/{name}/infer", args.infer),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MODEL_PATH": str(model), "LOG_LEVEL": "warning"}
        proc = start([sys.executable, "-m", "service", "--port", str(args.port)], env)
        try:
            wait_ready(proc, url)
            for key, path, seconds in routes:
                script = write_script(Path(tmp), f"{key}.lua", bodies[key])
                run_wrk(wrk, script, url + path, args.concurrency, args.warmup)
                before = rss_mib(proc.pid)
                run = measured_run(wrk, script, proc, url + path, args.concurrency, seconds)
                after = rss_mib(proc.pid)
                result = {
                    "route": path,
                    "seconds": seconds,
                    "concurrency": args.concurrency,
                    "requests": run["requests"],
                    "rps": round(run["rps"]),
                    "p99_ms": run["p99_ms"],
                    "errors": run["errors"],
                    "non_2xx": run["non_2xx"],
                    "cpu_us_per_request": round(run["cpu_us_per_request"], 1),
                    "rss_mib": [round(before, 1), round(after, 1)],
                    "rss_growth_percent": round((after - before) / before * 100, 2),
                    "load_average": os.getloadavg()[0],
                }
                print(json.dumps(result), flush=True)
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
