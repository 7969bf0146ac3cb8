"""The drift score: how far a window of served samples is from the training distribution.

Shared by the exporter, which calibrates the score on clean held-out windows and
stores the thresholds in the card, and by the service, which scores its sliding
window with the same code. numpy only (no torch, no onnx).

The score has one *component* for the input's quantiles and one per monitored tensor
(``MonitorSpec.components``):

- the input's quantiles: per input feature (or image channel) j, the window's
  empirical CDF ``G`` at the card's training quantiles ``e_k`` against the training
  CDF ``F`` there, as an Anderson-Darling statistic on that grid,
  ``A_j = Σ_k w_k (G_k − F_k)² / (F_k (1 − F_k))`` (``w_k``: the training mass each
  grid point stands for); the component is ``max_j A_j``, so one shifted feature
  among many is not averaged away. Rank-based, it is not thrown by heavy tails
  (measured: on tabular data the input's mean and variance were noisier and weaker
  than this, so the input is judged by its quantiles alone).
- a monitored tensor, whose moments a folded BatchNorm promises: per channel the
  reference is ``N(m, v + f)`` (``MonitoredTensor``); the
  window, pooled over samples and spatial positions, has centred mean ``a`` (its mean
  minus ``m``) and variance ``s²``. With ``p = s² + f`` and ``q = v + f`` the channel's
  divergence is the symmetric Kullback-Leibler divergence of the two Gaussians (the
  mean of both directions)

      D = ¼ (p/q + q/p − 2) + ¼ a² (1/p + 1/q),

  0 for a window that matches, growing with a shifted mean or a variance that grew or
  shrank, and invariant to any affine map of the channel (so it does not matter on
  which side of a folded layer it is measured). The component is the mean of ``D``
  over the tensor's channels.

Each component's score becomes its tail probability on clean windows of the same
size (the card stores its quantiles at ``tail_levels``; log-linear interpolation,
exponential extrapolation beyond the largest), and the overall score is
``−log10`` of the smallest of them: how surprising the most surprising component
is (Tippett's combination). Drift is declared when the overall score exceeds its own
split-conformal ``(1 − false_alarm_rate)`` quantile on clean windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bnfold.card import (
    FeatureRange,
    InputSpec,
    MonitoredTensor,
    MonitorSpec,
    WindowCalibration,
)

__all__ = ["DriftScorer", "RangeChecker", "WindowScore", "conformal_quantile"]

# A window whose variance collapsed to zero (e.g. every sample identical) scores huge but finite.
_MIN_VARIANCE_RATIO = 1e-12


@dataclass(frozen=True)
class WindowScore:
    """One window's scores (see the module docstring)."""

    divergence: np.ndarray  # (channels,) D of every monitored channel, in tensor order
    features: np.ndarray  # (features,) A_j of every input feature or channel
    components: np.ndarray  # (components,) the raw component scores
    log10_tail: np.ndarray  # (components,) log10 of each component's clean tail probability
    overall: float


class DriftScorer:
    """Scores windows of the internal output against a card's monitor reference."""

    def __init__(
        self,
        tensors: Sequence[MonitoredTensor],
        ranges: Sequence[FeatureRange],
        quantile_levels: Sequence[float],
        tail_levels: Sequence[float],
    ) -> None:
        self.names = ["input quantiles", *(t.name for t in tensors)]
        widths = np.asarray([t.channels for t in tensors], dtype=np.intp)
        first: list[int] = []
        for tensor, start in zip(tensors, np.cumsum(2 * widths) - 2 * widths, strict=True):
            first.extend(range(int(start), int(start) + tensor.channels))
        self._first = np.asarray(first, dtype=np.intp)
        self._second = self._first + np.repeat(widths, widths)
        self.tensor_of = np.repeat(np.arange(len(tensors), dtype=np.intp), widths)
        self.channel_labels = [f"{t.name}[{c}]" for t in tensors for c in range(t.channels)]
        self._floor = np.asarray([f for t in tensors for f in t.floor], dtype=np.float64)
        self._mean = np.asarray([m for t in tensors for m in t.mean], dtype=np.float64)
        q = np.asarray([v for t in tensors for v in t.var], dtype=np.float64) + self._floor
        # A channel with no variance at all (γ = 0) outputs a constant: nothing to watch.
        self.valid = q > 0
        self._q = np.where(self.valid, q, 1.0)
        counts = np.bincount(self.tensor_of, weights=self.valid, minlength=len(tensors))
        weights = np.where(self.valid, 1.0 / np.maximum(counts[self.tensor_of], 1), 0.0)
        self._membership = np.zeros((len(self._first), len(tensors)))
        self._membership[np.arange(len(self._first)), self.tensor_of] = weights

        moments = 2 * int(widths.sum())
        self.levels = len(quantile_levels)
        self.features = [r.name for r in ranges]
        self._cdf_columns = slice(moments, moments + len(ranges) * self.levels)
        self.columns = self._cdf_columns.stop
        cdf = np.asarray([r.cdf for r in ranges], dtype=np.float64)  # (features, levels)
        self._cdf = cdf
        padded = np.pad(cdf, ((0, 0), (1, 1)), constant_values=(0.0, 1.0))
        self._mass = (padded[:, 2:] - padded[:, :-2]) / 2
        lowest = float(quantile_levels[0])
        self._cdf_var = np.maximum(cdf * (1 - cdf), lowest * (1 - lowest))
        self._log_tail = np.log10(1.0 - np.asarray(tail_levels, dtype=np.float64))

    @classmethod
    def of(cls, spec: MonitorSpec) -> DriftScorer:
        """The scorer of a card's monitor entry."""
        return cls(spec.tensors, spec.ranges, spec.quantile_levels, spec.tail_levels)

    def channel_divergence(self, moments: np.ndarray) -> np.ndarray:
        """``(..., columns)`` window means of the internal output -> ``(..., channels)`` D."""
        first = moments[..., self._first]
        variance = np.maximum(moments[..., self._second] - first * first, 0.0)
        a = first - self._mean
        q = self._q
        p = np.maximum(variance + self._floor, q * _MIN_VARIANCE_RATIO)
        ratio = p / q
        d = 0.25 * (ratio + 1.0 / ratio - 2.0) + 0.25 * a * a * (1.0 / p + 1.0 / q)
        return np.where(self.valid, d, 0.0)

    def feature_statistic(self, moments: np.ndarray) -> np.ndarray:
        """``(..., columns)`` window means -> ``(..., features)`` Anderson-Darling on the grid."""
        window = moments[..., self._cdf_columns].reshape(*moments.shape[:-1], -1, self.levels)
        gap = window - self._cdf
        return np.sum(self._mass * gap * gap / self._cdf_var, axis=-1)

    def components(self, moments: np.ndarray) -> np.ndarray:
        """``(..., columns)`` window means -> ``(..., components)`` raw component scores."""
        tensors = self.channel_divergence(moments) @ self._membership
        features = self.feature_statistic(moments).max(axis=-1, keepdims=True)
        return np.concatenate([features, tensors], axis=-1)

    def log10_tail(
        self, components: np.ndarray, quantiles: Sequence[Sequence[float]]
    ) -> np.ndarray:
        """log10 of each component's tail probability on clean windows (<= 0), from each
        component's clean quantiles at the tail levels (``WindowCalibration``)."""
        out = np.empty_like(components, dtype=np.float64)
        logs = self._log_tail
        for c, levels in enumerate(quantiles):
            q = np.asarray(levels, dtype=np.float64)
            q = q + np.arange(len(q)) * 1e-12 * (1.0 + np.abs(q[-1]))  # strictly increasing
            s = components[..., c]
            slope = (logs[-1] - logs[-2]) / (q[-1] - q[-2])
            inside = np.interp(s, q, logs)  # flat at log10(1 - level) below the lowest quantile
            out[..., c] = np.where(s > q[-1], logs[-1] + slope * (s - q[-1]), inside)
        return out

    def overall(self, components: np.ndarray, quantiles: Sequence[Sequence[float]]) -> np.ndarray:
        """The overall score: ``-log10`` of the smallest component tail probability."""
        return -self.log10_tail(components, quantiles).min(axis=-1)

    def score(self, moments: np.ndarray, calibration: WindowCalibration) -> WindowScore:
        """Everything about one window, from the mean of its rows of the internal output."""
        divergence = self.channel_divergence(moments)
        features = self.feature_statistic(moments)
        components = np.concatenate([[features.max()], divergence @ self._membership])
        tail = self.log10_tail(components, calibration.component_quantiles)
        return WindowScore(divergence, features, components, tail, float(-tail.min()))


def conformal_quantile(scores: np.ndarray, rate: float) -> float:
    """The ``ceil((1 - rate)(n + 1))``-th smallest of ``n`` clean scores.

    For a new clean window exchangeable with the ``n`` calibration windows,
    P(score > this) <= ``rate`` (split conformal); the largest score if ``n`` is
    too small for that.
    """
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    rank = min(math.ceil((1.0 - rate) * (len(ordered) + 1)), len(ordered))
    return float(ordered[rank - 1])


class RangeChecker:
    """Which input features (tabular) or channels (image) of a batch leave the training range."""

    def __init__(self, ranges: Sequence[FeatureRange], input_spec: InputSpec) -> None:
        self.names = [r.name for r in ranges]
        self.low = np.asarray([r.min for r in ranges], dtype=np.float32)
        self.high = np.asarray([r.max for r in ranges], dtype=np.float32)
        self.image = input_spec.kind == "image"
        # Every value within [max of the minima, min of the maxima] is inside every range.
        self._inner = (float(self.low.max()), float(self.high.min()))

    def surely_inside(self, batch: np.ndarray) -> bool:
        """A quick sufficient test that no value leaves its range (exact for one channel)."""
        if self.image:
            low, high = self._inner
            return bool(low <= batch.min() and batch.max() <= high)
        return not ((batch < self.low) | (batch > self.high)).any()

    def flags(self, batch: np.ndarray) -> np.ndarray:
        """``(N, *sample_shape)`` -> ``(N, features)`` bool: some value outside [min, max]."""
        if self.image:
            flat = batch.reshape(batch.shape[0], batch.shape[1], -1)
            low, high = flat.min(axis=2), flat.max(axis=2)
            return (low < self.low) | (high > self.high)
        return (batch < self.low) | (batch > self.high)
