"""AdaBN recalibration under covariate shift: accuracy before and after ``recalibrate``.

Not a test: it prints a table (and writes JSON with ``--out``). The committed digits
model (``models/digits``: checkpoint.pt and the model.onnx exported from it) meets
the synthetic shifts of ``benchmarks/bench_drift.py`` (contrast x0.5 about each
image's mean, brightness +4, Gaussian noise sigma=2, inverted intensity, Gaussian
blur sigma=1; clipped to the pixel range 0..16). For each shift, the training split
shifted (its labels NOT given) is the target data of
``training.recalibrate.recalibrate_checkpoint`` (the ``recalibrate`` command's code),
and the shifted test split is the labelled evaluation set: its accuracy under the
parent model (before) and the recalibrated one (after), each computed by the
unfolded PyTorch model, whose export ``recalibrate`` verifies. ``clean``: the
unshifted training split as target, the control (AdaBN on the training distribution
changes little).

Also the drift monitor's view (``bench_drift.Monitor``, the card's calibrated
threshold): the share of ``--windows`` windows of 64 shifted test samples (drawn with
replacement) that the parent model's monitor flags, and that the recalibrated
model's flags: its reference is the recalibrated statistics, so the stream it was
adapted to is no longer drift for it. The parent is exported with its monitor into a
temporary folder (the committed model.onnx predates the monitor).

    python -m benchmarks.bench_adabn [--verify-samples 64] [--windows 200] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_drift import DIGITS_CHECKPOINT, IMAGE_SHIFTS, Monitor
from training.checkpoint import load_checkpoint
from training.data import load_splits
from training.export import export_checkpoint
from training.recalibrate import recalibrate_checkpoint

SEED = 0
WINDOW = 64


def alarms(monitor: Monitor, x: np.ndarray, windows: int) -> float:
    """The share of windows of ``x`` whose drift score is over the card's threshold."""
    index = np.random.default_rng(SEED).integers(0, len(x), size=(windows, WINDOW))
    scores = monitor.scores(monitor.moments(x), index)
    return float(np.mean(scores > monitor.threshold(WINDOW)))


def run(verify_samples: int, windows: int) -> list[dict[str, Any]]:
    """One row per shift (``clean`` first): accuracy before and after, drift alarms, time."""
    splits = load_splits(load_checkpoint(DIGITS_CHECKPOINT).data_spec)
    shifts = {"clean": lambda x, _: x, **IMAGE_SHIFTS}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        parent = export_checkpoint(DIGITS_CHECKPOINT, folder / "parent").path
        before = Monitor(parent)
        for i, (name, shift) in enumerate(shifts.items()):
            rng = np.random.default_rng(SEED)
            target, held_out = folder / f"target{i}.npz", folder / f"test{i}.npz"
            np.savez(target, X=shift(splits.train.X, rng))  # no y: unlabelled
            test = shift(splits.test.X, rng)
            np.savez(held_out, X=test, y=splits.test.y)
            start = time.perf_counter()
            result = recalibrate_checkpoint(
                DIGITS_CHECKPOINT,
                target,
                folder / f"out{i}",
                parent=parent,
                evaluation=held_out,
                verify_samples=verify_samples,
            )
            (accuracy,) = result.accuracy
            seconds = time.perf_counter() - start
            after = Monitor(result.export.path)
            rows.append(
                {
                    "shift": name,
                    "target_samples": result.target_samples,
                    "test_samples": accuracy.samples,
                    "acc_before": accuracy.before,
                    "acc_after": accuracy.after,
                    "recovered": accuracy.after - accuracy.before,
                    "alarms_before": alarms(before, test, windows),
                    "alarms_after": alarms(after, test, windows),
                    "verified": result.verify.passed,
                    "max_abs_prob_diff": result.verify.parity.max_abs_prob_diff,
                    "seconds": seconds,
                }
            )
    return rows


def show(rows: list[dict[str, Any]]) -> None:
    """Print the rows as a table."""
    print(f"accuracy on the shifted test split; drift alarms on windows of {WINDOW} of it")
    print(
        f"{'shift':<16}{'before':>9}{'after':>9}{'change':>9}{'alarms':>9}{'after':>7}"
        "  verified (max |dp|)  time"
    )
    for row in rows:
        print(
            f"{row['shift']:<16}{row['acc_before']:>9.2%}{row['acc_after']:>9.2%}"
            f"{row['recovered']:>+9.2%}{row['alarms_before']:>9.0%}{row['alarms_after']:>7.0%}"
            f"  {row['verified']!s:<5} ({row['max_abs_prob_diff']:.1e})     {row['seconds']:.1f} s"
        )


def main() -> None:
    """Run and print (and write ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify-samples", type=int, default=64)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = run(args.verify_samples, args.windows)
    show(rows)
    if args.out:
        args.out.write_text(
            json.dumps({"checkpoint": str(DIGITS_CHECKPOINT), "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
