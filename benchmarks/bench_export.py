"""ONNX Runtime single-sample latency: our folded export vs a plain torch.onnx.export.

Both graphs take raw input and return (logits, probabilities); the plain one is the
UNFOLDED model (standardization + network with its BatchNorm layers) exported with
torch.onnx.export's defaults. Ours is the graph the service answers with: for a card with
a drift monitor, the file less its internal output (``bnfold.onnxwire.prune_outputs``,
as ``service.runtime`` loads it); the whole file, which also computes the monitor's
statistics for the requests that feed its window, is reported beside it. All run in the
same process, one thread each, interleaved in rounds so that machine noise hits them
alike. Target: ours/plain <= 1.05.

    python -m benchmarks.bench_export [--run artifacts/digits]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

from bnfold.digest import read_card
from bnfold.onnxwire import prune_outputs
from training.checkpoint import load_checkpoint
from training.data import load_splits
from training.onnx_graph import WithProbabilities, ort_session, to_onnx
from training.reference import reference_model


def per_call_us(session, x: np.ndarray, calls: int, outputs=None) -> float:  # type: ignore[no-untyped-def]
    """Mean time of ``calls`` single-sample runs (of ``outputs``, default all), in microseconds."""
    feed = {session.get_inputs()[0].name: x}
    start = time.perf_counter()
    for _ in range(calls):
        session.run(outputs, feed)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", default="artifacts/digits", help="folder with model.onnx and checkpoint.pt"
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    run = Path(args.run)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    x = load_splits(ckpt.data_spec).test.X[:1].astype(np.float32)

    data = (run / "model.onnx").read_bytes()
    card = read_card(data)
    served = data if card.monitor is None else prune_outputs(data, {card.monitor.output})
    ours_model = onnx.load_from_string(served or data)
    example = torch.from_numpy(np.repeat(x, 2, 0))
    plain_model = to_onnx(WithProbabilities(reference_model(ckpt)), example)
    sessions = {
        "ours (folded)": ort_session(ours_model),
        "plain torch.onnx.export": ort_session(plain_model),
    }
    whole = "ours, whole graph (with the monitor's output)"
    if card.monitor is not None:
        whole_model = onnx.load_from_string(data)
        sessions[whole] = ort_session(whole_model)
    for session in sessions.values():  # warm up
        per_call_us(session, x, 200)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.rounds):
        for name, session in sessions.items():
            times[name].append(per_call_us(session, x, args.calls))
    # The minimum over rounds is the least disturbed by other load on the machine;
    # the median is reported beside it.
    best = {name: min(values) for name, values in times.items()}
    medians = {name: statistics.median(values) for name, values in times.items()}
    ours, plain = "ours (folded)", "plain torch.onnx.export"
    result = {
        "best_us_per_call": best,
        "median_us_per_call": medians,
        "ratio_ours_over_plain_best": best[ours] / best[plain],
        "ratio_ours_over_plain_median": medians[ours] / medians[plain],
        "target_ratio": 1.05,
        "nodes": {
            ours: dict(Counter(n.op_type for n in ours_model.graph.node)),
            plain: dict(Counter(n.op_type for n in plain_model.graph.node)),
        },
        "rounds": args.rounds,
        "calls_per_round": args.calls,
    }
    if card.monitor is not None:
        result["nodes"][whole] = dict(Counter(n.op_type for n in whole_model.graph.node))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
