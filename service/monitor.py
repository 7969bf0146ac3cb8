"""Drift monitoring of one served model: a sliding window over the recent samples (no HTTP).

Every sample is range-checked against the card's training ranges and its
predicted class counted. Samples also feed the window (the graph's internal output
for them: the monitored BatchNorm tensors' moments and the input's quantile
fractions, which the runtime's whole graph returns with the answer, and their
predicted classes) within a time budget: after a request that ran the whole graph
for ``t`` seconds the monitor waits ``t (1 - share) / share`` before it takes the
next, so the whole graph runs at most ``share`` of the time (the lean graph without
the monitor's nodes answers the rest). At low traffic every request feeds it; under
load, one now and then, chosen by arrival time alone, so the window stays a fair
picture of the traffic while it spans more of it.
Everything else is computed only when asked for (``snapshot``: on ``GET /monitor``
and on a metrics scrape), with ``bnfold.drift``, the same code the exporter
calibrated the thresholds with. No training data is needed: the card holds the
reference. One ``Monitor`` belongs to one loaded model (its ``Predictor``), so a
new model starts with a new, empty window.

The window holds the last ``window`` samples that fed it; the range window, the
last ``window`` samples range-checked (also those a ``reject`` policy turned away).
A sample outside the training range whose statistics are not finite (values near
the float32 limit) is counted but kept out of the window, so that one request
cannot blind the monitor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bnfold.card import ModelCard, MonitorSpec
from bnfold.drift import DriftScorer, RangeChecker, WindowScore

__all__ = ["Monitor", "Snapshot"]

TOP = 5  # most-shifted channels and features reported


@dataclass(frozen=True)
class Snapshot:
    """The monitor's state at one moment (``score`` is None below the smallest calibrated
    window)."""

    samples: int  # in the window
    seen: int  # fed the window since the start (the sampled ones)
    checked: int  # range-checked since the start
    calibrated_window: int | None
    threshold: float | None
    score: WindowScore | None
    out_of_range_window: np.ndarray  # (features,) share of the range window outside
    out_of_range_any: float  # share of the range window with any feature outside
    range_samples: int
    out_of_range_total: np.ndarray  # (features,) since the start
    class_window: np.ndarray  # (classes,) predicted-class counts in the window
    class_total: np.ndarray  # (classes,) since the start
    non_finite: int  # out-of-range samples kept out of the window

    @property
    def drift(self) -> bool | None:
        """Whether the overall score exceeds its calibrated threshold (None: too few samples)."""
        if self.score is None or self.threshold is None:
            return None
        return self.score.overall > self.threshold


class Monitor:
    """The window of one model's recent samples and what it says about drift."""

    def __init__(self, card: ModelCard, window: int, share: float = 1.0) -> None:
        if card.monitor is None:
            raise ValueError("the card has no monitor reference")
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.card = card
        self.spec: MonitorSpec = card.monitor
        self.window = window
        self.share = share
        self._wait_factor = (1 - share) / share
        self._next = 0.0  # perf_counter time from which the next request may feed the window
        self.scorer = DriftScorer.of(self.spec)
        self.ranges = RangeChecker(self.spec.ranges, card.input)
        features, classes = len(self.spec.ranges), len(card.labels)
        tabular = card.input.kind == "tabular"
        self.warning_text = [
            f"{f'feature {r.name!r}' if tabular else r.name} is outside the training range "
            f"{r.min:g} to {r.max:g}"
            for r in self.spec.ranges
        ]
        self._stats = np.zeros((window, self.spec.columns), dtype=np.float32)
        self._classes = np.zeros(window, dtype=np.intp)
        self._flags = np.zeros((window, features), dtype=bool)
        self._dirty = bytearray(window)  # which rows of _flags hold a True
        self._position = self._range_position = 0
        self.seen = self.checked = self.non_finite = 0
        self.out_of_range_total = np.zeros(features, dtype=np.int64)
        self.class_total = np.zeros(classes, dtype=np.int64)
        self._snapshot: tuple[tuple[int, int], Snapshot] | None = None

    def check(self, batch: np.ndarray) -> list[list[str]] | None:
        """Range-check a validated batch: per sample, the warnings (None if all in range)."""
        n = len(batch)
        self.checked += n
        position = self._range_position
        self._range_position = (position + n) % self.window
        if n == 1 and self.ranges.surely_inside(batch):  # the request path, in one test
            if self._dirty[position]:
                self._flags[position] = False
                self._dirty[position] = 0
            return None
        flags = self.ranges.flags(batch)
        _put(self._flags, position, flags)
        for i in range(max(0, n - self.window), n):
            self._dirty[(position + i) % self.window] = int(flags[i].any())
        if not flags.any():
            return None
        self.out_of_range_total += flags.sum(axis=0)
        text = self.warning_text
        return [[text[j] for j in np.flatnonzero(row)] for row in flags]

    def due(self) -> bool:
        """Whether this request's samples feed the window (the time budget allows it)."""
        return time.perf_counter() >= self._next

    def spent(self, seconds: float) -> None:
        """The whole graph ran for ``seconds``: wait in proportion before the next one."""
        self._next = time.perf_counter() + seconds * self._wait_factor

    def count(self, classes: np.ndarray) -> None:
        """Count every prediction by class."""
        if len(classes) == 1:
            self.class_total[classes[0]] += 1
        else:
            self.class_total += np.bincount(classes, minlength=len(self.class_total))

    def observe(self, stats: np.ndarray, classes: np.ndarray, out_of_range: bool) -> None:
        """Add sampled samples to the window: internal-output rows and predicted classes."""
        if out_of_range:  # only values outside the training range can overflow the statistics
            finite = np.isfinite(stats).all(axis=1)
            if not finite.all():
                self.non_finite += int((~finite).sum())
                stats, classes = stats[finite], classes[finite]
        n = len(stats)
        _put(self._classes, self._position, classes)
        self._position = _put(self._stats, self._position, stats)
        self.seen += n

    def snapshot(self) -> Snapshot:
        """Score the window (cached until a sample arrives)."""
        key = (self.seen, self.checked)
        if self._snapshot is not None and self._snapshot[0] == key:
            return self._snapshot[1]
        samples = min(self.seen, self.window)
        calibration = self.spec.calibration_for(samples)
        score = None
        if calibration is not None:
            means = self._stats[:samples].mean(axis=0, dtype=np.float64)
            score = self.scorer.score(means, calibration)
        ranged = min(self.checked, self.window)
        flags = self._flags[:ranged]
        snapshot = Snapshot(
            samples=samples,
            seen=self.seen,
            checked=self.checked,
            calibrated_window=None if calibration is None else calibration.window,
            threshold=None if calibration is None else calibration.threshold,
            score=score,
            out_of_range_window=flags.mean(axis=0) if ranged else np.zeros(flags.shape[1]),
            out_of_range_any=float(flags.any(axis=1).mean()) if ranged else 0.0,
            range_samples=ranged,
            out_of_range_total=self.out_of_range_total.copy(),
            class_window=np.bincount(self._classes[:samples], minlength=len(self.class_total)),
            class_total=self.class_total.copy(),
            non_finite=self.non_finite,
        )
        self._snapshot = (key, snapshot)
        return snapshot

    def most_shifted(self, score: WindowScore) -> tuple[list[tuple[str, float]], ...]:
        """The ``TOP`` channels with the largest divergence and features with the largest
        statistic, largest first."""
        channels = np.argsort(score.divergence)[::-1][:TOP]
        features = np.argsort(score.features)[::-1][:TOP]
        return (
            [(self.scorer.channel_labels[i], float(score.divergence[i])) for i in channels],
            [(self.scorer.features[i], float(score.features[i])) for i in features],
        )


def _put(ring: np.ndarray, position: int, rows: np.ndarray) -> int:
    """Write ``rows`` into ``ring`` from ``position`` on, wrapping; the next position."""
    size, n = len(ring), len(rows)
    if n == 1:  # the request path: one sample
        ring[position] = rows[0]
        return (position + 1) % size
    if n > size:  # only the last ``size`` rows stay
        position, rows = (position + n - size) % size, rows[n - size :]
        n = size
    ring[(position + np.arange(n)) % size] = rows
    return (position + n) % size


def build_monitor(
    card: ModelCard, *, enabled: bool, window: int, share: float = 1.0
) -> Monitor | None:
    """The monitor of a loaded model, or None (monitoring off, or a card without reference)."""
    if not enabled or card.monitor is None:
        return None
    return Monitor(card, window, share)
