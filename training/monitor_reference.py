"""The card's ``monitor`` entry: reference moments, input ranges and calibrated thresholds.

The reference of every monitored tensor comes from the exported model's own
statistics, the folded BatchNorm layers (``training.folding.moments``), so a
re-export with new statistics (AdaBN) carries its own reference; the input's
ranges, quantiles and CDF at them are measured on the reference data (the
training split, or whatever data the statistics were computed on).

The thresholds are calibrated on clean held-out data run through the exported
graph exactly as the service runs it. A window the service sees is a sample of
the serving distribution, of which the held-out set is itself only one sample;
so each of the ``CALIBRATION_WINDOWS`` clean windows per size is drawn from its
own bootstrap replicate of the held-out set (a two-stage bootstrap: the window's
own sampling noise plus that of a held-out set like this one), for every size in
``WINDOW_SIZES`` up to the held-out set's size. Measured: drawing straight from
the held-out set let a different test set of the same size exceed the stated
rate (1.5% instead of 1%). The threshold is the split-conformal
``(1 - FALSE_ALARM_RATE)`` quantile of the overall score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from bnfold.card import (
    MONITOR_OUTPUT,
    FeatureRange,
    InputSpec,
    MonitoredTensor,
    MonitorSpec,
    WindowCalibration,
)
from bnfold.drift import DriftScorer, RangeChecker, conformal_quantile
from training.errors import UsageError
from training.folding import FoldReport
from training.folding.moments import ExpectedMoments
from training.monitor_graph import Tap

QUANTILE_LEVELS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
TAIL_LEVELS = (0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999)
SCORE_LEVELS = (0.5, 0.9, 0.95, 0.99)
WINDOW_SIZES = (16, 32, 64, 128, 256, 512, 1024)
CALIBRATION_WINDOWS = 2000
FALSE_ALARM_RATE = 0.01
_CHUNK = 1 << 22  # values gathered at once while drawing windows


@dataclass(frozen=True)
class MonitorData:
    """What the exporter needs to build the monitor reference (raw inputs, as served)."""

    reference: np.ndarray  # the data the statistics describe: input ranges and quantiles
    calibration: np.ndarray  # clean held-out inputs: the thresholds
    reference_name: str = "training split"
    calibration_name: str = "validation split"
    seed: int = 0


def monitored_tensors(
    moments: Sequence[ExpectedMoments], report: FoldReport
) -> tuple[list[Tap], list[MonitoredTensor]]:
    """The graph taps and the card's tensors: one per folded BatchNorm."""
    targets = {e.name: e.target for e in report.entries}
    taps, tensors = [], []
    for m in moments:
        if m.direction == "backward":
            what = f"output of {targets[m.name]} (BatchNorm {m.name} folded backward)"
        else:
            what = f"input of {targets[m.name]} (BatchNorm {m.name} folded forward)"
        taps.append(Tap(m.node, int(m.mean.numel())))
        tensors.append(
            MonitoredTensor(
                name=m.name,
                origin=m.direction,
                description=what,
                mean=m.mean.tolist(),
                var=m.var.tolist(),
                floor=m.floor.tolist(),
            )
        )
    return taps, tensors


def input_ranges(x: np.ndarray, spec: InputSpec) -> list[FeatureRange]:
    """Training range, quantiles and CDF at them, per input column (tabular) or channel (image)."""
    x64 = np.asarray(x, dtype=np.float64)
    if spec.kind == "image":
        per = np.moveaxis(x64, 1, 0).reshape(x64.shape[1], -1)
        names = [f"channel {c}" for c in range(x64.shape[1])]
    else:
        per = x64.T
        names = list(spec.columns or [])
    # The quantiles go through float32 in the graph: measure the CDF at those very values.
    quantiles = np.quantile(per, QUANTILE_LEVELS, axis=1).T.astype(np.float32).astype(np.float64)
    ranges = []
    for name, values, q in zip(names, per, quantiles, strict=True):
        q = np.clip(q, values.min(), values.max())
        cdf = (values[:, None] <= q[None, :]).mean(axis=0)
        ranges.append(
            FeatureRange(
                name=name,
                min=float(values.min()),
                max=float(values.max()),
                quantiles=q.tolist(),
                cdf=cdf.tolist(),
            )
        )
    return ranges


def quantile_tensor(ranges: Sequence[FeatureRange]) -> torch.Tensor:
    """``(features, levels)`` quantiles, for the graph."""
    return torch.as_tensor([r.quantiles for r in ranges], dtype=torch.float32)


def internal_moments(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """The internal output of the exported graph on ``x`` (float64, one row per sample)."""
    name = session.get_inputs()[0].name
    rows = [
        session.run([MONITOR_OUTPUT], {name: np.ascontiguousarray(x[i : i + 512], np.float32)})[0]
        for i in range(0, len(x), 512)
    ]
    return np.concatenate(rows).astype(np.float64)


def window_means(stats: np.ndarray, size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """The means of ``count`` windows of ``size`` rows of ``stats``, each drawn with
    replacement from its own bootstrap replicate of ``stats`` (see the module docstring)."""
    n = len(stats)
    out = np.empty((count, stats.shape[1]))
    chunk = max(1, _CHUNK // (max(size, n) * stats.shape[1]))
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        replicate = rng.integers(0, n, size=(stop - start, n))
        index = np.take_along_axis(replicate, rng.integers(0, n, size=(stop - start, size)), 1)
        out[start:stop] = stats[index].mean(axis=1)
    return out


def calibrate(
    scorer: DriftScorer, stats: np.ndarray, rng: np.random.Generator
) -> list[WindowCalibration]:
    """Score clean bootstrap windows of every size the held-out data supports."""
    sizes = [n for n in WINDOW_SIZES if n <= len(stats)]
    if not sizes:
        raise UsageError(
            f"drift monitoring needs at least {WINDOW_SIZES[0]} held-out samples to calibrate "
            f"its thresholds, got {len(stats)}"
        )
    result = []
    for size in sizes:
        components = scorer.components(window_means(stats, size, CALIBRATION_WINDOWS, rng))
        quantiles = np.maximum.accumulate(np.quantile(components, TAIL_LEVELS, axis=0).T, axis=1)
        overall = scorer.overall(components, quantiles.tolist())
        result.append(
            WindowCalibration(
                window=size,
                windows=CALIBRATION_WINDOWS,
                component_quantiles=quantiles.tolist(),
                quantiles=np.quantile(overall, SCORE_LEVELS).tolist(),
                threshold=conformal_quantile(overall, FALSE_ALARM_RATE),
            )
        )
    return result


def monitor_spec(
    session: ort.InferenceSession,
    tensors: list[MonitoredTensor],
    ranges: list[FeatureRange],
    data: MonitorData,
    spec: InputSpec,
) -> MonitorSpec:
    """The card's ``monitor`` entry for an exported graph that has the internal output."""
    scorer = DriftScorer(tensors, ranges, QUANTILE_LEVELS, TAIL_LEVELS)
    stats = internal_moments(session, data.calibration)
    calibration = calibrate(scorer, stats, np.random.default_rng(data.seed))
    flags = RangeChecker(ranges, spec).flags(np.asarray(data.calibration, dtype=np.float32))
    return MonitorSpec(
        tensors=tensors,
        ranges=ranges,
        quantile_levels=list(QUANTILE_LEVELS),
        range_data=f"{data.reference_name}, {len(data.reference)} samples",
        false_alarm_rate=FALSE_ALARM_RATE,
        tail_levels=list(TAIL_LEVELS),
        score_levels=list(SCORE_LEVELS),
        calibration=calibration,
        calibration_data=f"{data.calibration_name}, {len(stats)} samples; "
        f"{CALIBRATION_WINDOWS} windows per size drawn with replacement",
        clean_out_of_range_rate=float(flags.any(axis=1).mean()),
    )
