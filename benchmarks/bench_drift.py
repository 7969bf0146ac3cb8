"""Drift detection from the folded BatchNorm statistics vs a standard detector on raw inputs.

Not a test: it prints figures (and writes them as JSON with ``--out``). In one run:

- digits: the committed checkpoint (``models/digits/checkpoint.pt``) re-exported into a
  temporary folder; synthetic shifts of the test split (contrast x0.5 about each image's
  mean, brightness +4, Gaussian noise sigma=2, inverted intensity 16 - x, Gaussian blur
  sigma=1; every result clipped to the pixel range 0..16, as a real sensor would);
- breast_cancer: a quick training (the CLI defaults) and export; shifts of a few
  features of the test split, in units of their training standard deviation, and two
  that leave every marginal as it is: 'mean radius' shuffled across samples (which
  breaks its 0.99 correlation with the perimeter and area features), and each of the
  ten 'mean ...' features shuffled independently.

For each shift and window size (64, 256), ``--windows`` windows are drawn with
replacement from the test split; the same index sets give the clean and the shifted
windows. Two detectors score every window:

- ``bnfold``: the overall drift score of ``bnfold.drift`` on the exported graph's
  internal output (the reference is the card's, no training data);
- ``ks``: per-feature two-sample Kolmogorov-Smirnov tests against the WHOLE training split
  with a Bonferroni correction, as Alibi Detect's ``KSDrift`` does (``scipy.stats.ks_2samp``,
  asymptotic p-values); its score is the smallest p-value (drift: min p < 0.01 / features).
  Alibi Detect itself does not install here without downgrading numpy.

Reported: detection AUROC of each score between clean and shifted windows, the share of
shifted windows each detector flags at its own threshold, and the false-alarm rate of
both on clean windows (``bnfold``: the card's calibrated threshold, stated rate 1%).

Also the cost of the internal output in ONNX Runtime (one thread, single samples, rounds
interleaved as in ``bench_export``): the digits model exported without the monitor, with
it but asking only for the public outputs, and with it asking for everything.
With ``--load``: the service-level overhead under ``wrk`` load on ``POST /predict``
(``benchmarks/serve_load.py``'s machinery: servers pinned to core 0, ``wrk`` to core 1,
interleaved rounds), three servers side by side: the monitored export with
``MONITOR=on``, the same file with ``MONITOR=off``, and the export without the
monitor (what serving cost before it). Reported per concurrency: requests per second
and the ratios, medians over rounds.

    python -m benchmarks.bench_drift [--windows 400] [--load] [--out /tmp/bench_drift.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, stats
from sklearn.metrics import roc_auc_score

from benchmarks.bench_export import per_call_us
from bnfold import digest
from bnfold.card import MONITOR_OUTPUT, OUTPUTS, ModelCard
from bnfold.drift import DriftScorer
from training.checkpoint import load_checkpoint
from training.data import load_splits
from training.export import export_checkpoint
from training.monitor_reference import internal_moments
from training.onnx_graph import ort_session

REPO = Path(__file__).resolve().parents[1]
DIGITS_CHECKPOINT = REPO / "models" / "digits" / "checkpoint.pt"
SIZES = (64, 256)
ALPHA = 0.01
PIXEL_MAX = 16.0

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _pixels(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, PIXEL_MAX).astype(np.float32)


def _contrast(x: np.ndarray, _: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return _pixels(mean + 0.5 * (x - mean))


def _blur(x: np.ndarray, _: np.random.Generator) -> np.ndarray:
    return _pixels(ndimage.gaussian_filter(x, sigma=(0, 0, 1.0, 1.0), mode="constant"))


IMAGE_SHIFTS: dict[str, Shift] = {
    "contrast x0.5": _contrast,
    "brightness +4": lambda x, _: _pixels(x + 4.0),
    "noise sigma=2": lambda x, rng: _pixels(x + rng.normal(0.0, 2.0, x.shape)),
    "inverted": lambda x, _: _pixels(PIXEL_MAX - x),
    "blur sigma=1": _blur,
}


def tabular_shifts(std: np.ndarray, names: list[str]) -> dict[str, Shift]:
    """Shifts of a few breast_cancer features, in units of their training std."""
    three = [names.index(n) for n in ("mean radius", "mean texture", "mean smoothness")]
    one = [names.index("worst concavity")]

    def add(columns: list[int], sigmas: float) -> Shift:
        def shift(x: np.ndarray, _: np.random.Generator) -> np.ndarray:
            out = x.copy()
            out[:, columns] += sigmas * std[columns]
            return out

        return shift

    def scale(columns: list[int], factor: float) -> Shift:
        def shift(x: np.ndarray, _: np.random.Generator) -> np.ndarray:
            out = x.copy()
            out[:, columns] *= factor
            return out

        return shift

    def noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (x + rng.normal(0.0, 0.5, x.shape) * std).astype(np.float32)

    def decouple(columns: list[int]) -> Shift:
        # Every marginal unchanged; only the features' relations to the others are gone.
        def shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            out = x.copy()
            for column in columns:
                out[:, column] = rng.permutation(out[:, column])
            return out

        return shift

    means = [i for i, n in enumerate(names) if n.startswith("mean ")]

    return {
        "3 features +0.5 std": add(three, 0.5),
        "3 features x1.2": scale(three, 1.2),
        "1 feature +1 std": add(one, 1.0),
        "all features + noise 0.5 std": noise,
        "mean radius decoupled": decouple(three[:1]),
        "10 'mean' features decoupled": decouple(means),
    }


class Monitor:
    """The bnfold score of windows, from the exported graph's internal output."""

    def __init__(self, path: Path) -> None:
        self.card: ModelCard = digest.check(path.read_bytes())
        assert self.card.monitor is not None, "the export has no monitor"
        self.spec = self.card.monitor
        self.scorer = DriftScorer.of(self.spec)
        self.session = ort_session(str(path))

    def moments(self, x: np.ndarray) -> np.ndarray:
        return internal_moments(self.session, x)

    def scores(self, moments: np.ndarray, windows: np.ndarray) -> np.ndarray:
        calibration = self.spec.calibration_for(windows.shape[1])
        assert calibration is not None
        components = self.scorer.components(moments[windows].mean(axis=1))
        return self.scorer.overall(components, calibration.component_quantiles)

    def threshold(self, size: int) -> float:
        calibration = self.spec.calibration_for(size)
        assert calibration is not None
        return calibration.threshold


def ks_min_p(reference: np.ndarray, x: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Per window: the smallest per-feature KS p-value against the whole reference."""
    ref = reference.reshape(len(reference), -1)
    flat = x.reshape(len(x), -1)
    out = np.empty(len(windows))
    for i, index in enumerate(windows):
        window = flat[index]
        out[i] = min(
            stats.ks_2samp(ref[:, f], window[:, f], method="asymp").pvalue
            for f in range(ref.shape[1])
        )
    return out


def evaluate(
    name: str,
    monitor: Monitor,
    train_x: np.ndarray,
    test_x: np.ndarray,
    shifts: dict[str, Shift],
    windows: int,
    seed: int,
) -> dict[str, Any]:
    """AUROC and detection rates of both detectors, per shift and window size."""
    rng = np.random.default_rng(seed)
    features = int(np.prod(train_x.shape[1:]))
    clean_moments = monitor.moments(test_x)
    shifted = {label: shift(test_x, rng) for label, shift in shifts.items()}
    shifted_moments = {label: monitor.moments(x) for label, x in shifted.items()}
    result: dict[str, Any] = {"dataset": name, "features": features, "sizes": {}}
    for size in SIZES:
        index = rng.integers(0, len(test_x), size=(windows, size))
        clean_bn = monitor.scores(clean_moments, index)
        clean_ks = ks_min_p(train_x, test_x, index)
        threshold = monitor.threshold(size)
        row: dict[str, Any] = {
            "window": size,
            "threshold": threshold,
            "calibrated_window": monitor.spec.calibration_for(size).window,  # type: ignore[union-attr]
            "false_alarm_rate": {
                "bnfold": float(np.mean(clean_bn > threshold)),
                "ks": float(np.mean(clean_ks < ALPHA / features)),
                "stated": monitor.spec.false_alarm_rate,
            },
            "shifts": {},
        }
        for label, x in shifted.items():
            bn = monitor.scores(shifted_moments[label], index)
            ks = ks_min_p(train_x, x, index)
            labels = np.r_[np.zeros(windows), np.ones(windows)]
            row["shifts"][label] = {
                "auroc_bnfold": float(roc_auc_score(labels, np.r_[clean_bn, bn])),
                "auroc_ks": float(roc_auc_score(labels, -np.r_[clean_ks, ks])),
                "detected_bnfold": float(np.mean(bn > threshold)),
                "detected_ks": float(np.mean(ks < ALPHA / features)),
            }
        result["sizes"][str(size)] = row
    return result


def digits(folder: Path, windows: int, seed: int) -> dict[str, Any]:
    exported = export_checkpoint(DIGITS_CHECKPOINT, folder / "digits")
    splits = load_splits(load_checkpoint(DIGITS_CHECKPOINT).data_spec)
    monitor = Monitor(exported.path)
    return evaluate(
        "digits (committed checkpoint)",
        monitor,
        splits.train.X,
        splits.test.X,
        IMAGE_SHIFTS,
        windows,
        seed,
    )


def tabular(folder: Path, windows: int, seed: int) -> dict[str, Any]:
    run = folder / "breast_cancer"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "train",
            "--dataset",
            "breast_cancer",
            "--out",
            str(run),
            "--quiet",
            "--seed",
            str(seed),
        ],
        check=True,
        cwd=REPO,
    )
    exported = export_checkpoint(run / "checkpoint.pt", run)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    splits = load_splits(ckpt.data_spec)
    std = np.asarray(ckpt.standardization.std, dtype=np.float32)
    shifts = tabular_shifts(std, list(splits.feature_names or []))
    monitor = Monitor(exported.path)
    return evaluate(
        "breast_cancer (MLP, quick training)",
        monitor,
        splits.train.X,
        splits.test.X,
        shifts,
        windows,
        seed,
    )


def ort_latency(folder: Path, rounds: int, calls: int) -> dict[str, Any]:
    """Single-sample ORT latency with and without the monitor's internal output."""
    monitored = export_checkpoint(DIGITS_CHECKPOINT, folder / "ort-monitored")
    plain = export_checkpoint(DIGITS_CHECKPOINT, folder / "ort-plain", monitor=False)
    x = load_splits(load_checkpoint(DIGITS_CHECKPOINT).data_spec).test.X[:1]
    cases = {
        "no monitor": (ort_session(str(plain.path)), list(OUTPUTS)),
        "monitor, public outputs only": (ort_session(str(monitored.path)), list(OUTPUTS)),
        "monitor, all outputs": (
            ort_session(str(monitored.path)),
            [*OUTPUTS, MONITOR_OUTPUT],
        ),
    }
    for session, names in cases.values():
        per_call_us(session, x, 200, names)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (session, names) in cases.items():
            times[name].append(per_call_us(session, x, calls, names))
    best = {name: min(t) for name, t in times.items()}
    return {
        "best_us_per_call": best,
        "ratio_all_outputs_over_no_monitor": best["monitor, all outputs"] / best["no monitor"],
        "ratio_public_only_over_no_monitor": best["monitor, public outputs only"]
        / best["no monitor"],
        "rounds": rounds,
        "calls_per_round": calls,
    }


def load_overhead(
    folder: Path, duration: float, rounds: int, concurrency: list[int]
) -> dict[str, Any]:
    """Throughput of /predict with the monitor on, off, and without it in the graph."""
    import statistics

    from benchmarks import loadgen as load

    monitored = export_checkpoint(DIGITS_CHECKPOINT, folder / "load-monitored").path
    plain = export_checkpoint(DIGITS_CHECKPOINT, folder / "load-plain", monitor=False).path
    wrk = load.ensure_wrk()
    script = load.write_script(folder, "post.lua", load.golden_bodies(monitored)["predict"])
    servers = {
        "monitor on": (monitored, "on", 18180),
        "monitor off": (monitored, "off", 18181),
        "no monitor in the graph": (plain, "off", 18182),
    }
    procs = {}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    try:
        for name, (model, monitor, port) in servers.items():
            env = {"MODEL_PATH": str(model), "MONITOR": monitor, "LOG_LEVEL": "warning"}
            procs[name] = load.start([sys.executable, "-m", "service", "--port", str(port)], env)
        for name, (_, _, port) in servers.items():
            url = f"http://127.0.0.1:{port}"
            load.wait_ready(procs[name], url)
            load.run_wrk(wrk, script, f"{url}/predict", 16, 2.0)  # warm up
        for _ in range(rounds):
            for c in concurrency:
                for name, (_, _, port) in servers.items():
                    url = f"http://127.0.0.1:{port}/predict"
                    run = load.measured_run(wrk, script, procs[name], url, c, duration)
                    runs[name].append(run)
    finally:
        for proc in procs.values():
            load.stop(proc)
    result: dict[str, Any] = {"duration_s": duration, "rounds": rounds, "by_concurrency": {}}
    for c in concurrency:
        per = {n: [r for r in runs[n] if r["concurrency"] == c] for n in servers}
        on, off, plain_runs = (per[n] for n in servers)
        result["by_concurrency"][str(c)] = {
            "rps": {n: statistics.median(r["rps"] for r in per[n]) for n in servers},
            "cpu_us_per_request": {
                n: statistics.median(r["cpu_us_per_request"] for r in per[n]) for n in servers
            },
            "errors": {n: sum(r["errors"] + r["non_2xx"] for r in per[n]) for n in servers},
            "rps_ratio_on_over_off": statistics.median(
                a["rps"] / b["rps"] for a, b in zip(on, off, strict=True)
            ),
            "rps_ratio_on_over_no_monitor": statistics.median(
                a["rps"] / b["rps"] for a, b in zip(on, plain_runs, strict=True)
            ),
        }
    return result


def print_report(results: list[dict[str, Any]]) -> None:
    for result in results:
        print(f"\n{result['dataset']}: {result['features']} raw features")
        for size, row in result["sizes"].items():
            fa = row["false_alarm_rate"]
            print(
                f"  window {size} (card calibration of {row['calibrated_window']}): clean false "
                f"alarms bnfold {fa['bnfold']:.3f} (stated {fa['stated']:.2f}), ks {fa['ks']:.3f}"
            )
            print(
                f"    {'shift':30} {'AUROC bnfold':>12} {'AUROC ks':>9} {'det bnfold':>10} "
                f"{'det ks':>7}"
            )
            for label, s in row["shifts"].items():
                print(
                    f"    {label:30} {s['auroc_bnfold']:12.3f} {s['auroc_ks']:9.3f} "
                    f"{s['detected_bnfold']:10.2f} {s['detected_ks']:7.2f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=400, help="windows per shift and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=15, help="ORT latency rounds")
    parser.add_argument("--calls", type=int, default=2000, help="ORT calls per round")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--load", action="store_true", help="also the service overhead (wrk)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--load-rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        report["load_before"] = os.getloadavg()
        if args.load:
            report["load"] = load_overhead(
                Path(tmp), args.duration, args.load_rounds, args.concurrency
            )
        report["ort"] = ort_latency(Path(tmp), args.rounds, args.calls)
        if not args.skip_detection:
            report["detection"] = [
                digits(Path(tmp), args.windows, args.seed),
                tabular(Path(tmp), args.windows, args.seed),
            ]
    report["load_after"] = os.getloadavg()
    print(json.dumps({k: v for k, v in report.items() if k != "detection"}, indent=2))
    print_report(report.get("detection", []))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
