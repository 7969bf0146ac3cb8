"""``GET /monitor``: the drift monitor's report, its response model and its route."""

from __future__ import annotations

import math

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.monitor import Monitor
from service.predictor import Slot

__all__ = ["MonitorReport", "build_monitor_router", "monitor_report"]


class Component(BaseModel):
    """One part of the drift score: the input's quantiles, or one folded BatchNorm's tensor."""

    name: str
    description: str
    score: float = Field(description="Its raw score: Anderson-Darling statistic or divergence.")
    surprise: float = Field(
        description="-log10 of the share of clean windows that scored as high (its tail "
        "probability, extrapolated beyond the calibrated quantiles)."
    )
    shifted: bool = Field(description="Tail probability below the false-alarm rate.")


class Shift(BaseModel):
    """A channel or input feature and how far it moved."""

    name: str
    value: float


class OutOfRange(BaseModel):
    """Input values outside the training range."""

    samples: int = Field(description="Samples in the range window.")
    rate: float = Field(description="Share of them with some value outside the range.")
    clean_rate: float = Field(description="The same share on the clean held-out data (card).")
    by_feature: dict[str, float] = Field(description="Per feature or channel (non-zero only).")
    total: dict[str, int] = Field(description="Counts since the start (non-zero only).")


class Predictions(BaseModel):
    """The predicted-class distribution against the training label distribution."""

    window: dict[str, float]
    training: dict[str, float] | None = Field(
        description="From the card's training class counts (None if it has none)."
    )
    total_variation: float | None = Field(description="½ Σ |window − training|.")
    total: dict[str, int] = Field(description="Predictions per label since the start.")


class MonitorReport(BaseModel):
    """What the drift monitor sees in the recent samples."""

    enabled: bool
    reason: str | None = Field(default=None, description="Why monitoring is off.")
    model_version: str
    window_size: int | None = None
    samples_in_window: int | None = None
    samples_seen: int | None = None
    calibrated_window: int | None = Field(
        default=None, description="The card's calibration used (largest not above the window)."
    )
    drift: bool | None = Field(
        default=None, description="Overall score above its threshold; None: too few samples yet."
    )
    score: float | None = None
    threshold: float | None = None
    false_alarm_rate: float | None = Field(
        default=None, description="Share of clean windows over the threshold (calibrated)."
    )
    components: list[Component] = Field(default_factory=list)
    most_shifted_channels: list[Shift] = Field(
        default_factory=list, description="Largest per-channel divergence D (tensor[channel])."
    )
    most_shifted_features: list[Shift] = Field(
        default_factory=list, description="Largest Anderson-Darling statistic of input features."
    )
    input_out_of_range: OutOfRange | None = None
    predictions: Predictions | None = None
    non_finite_skipped: int | None = Field(
        default=None,
        description="Out-of-range samples whose statistics overflowed: not in the window.",
    )


def _nonzero(names: list[str], values: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, values.tolist(), strict=True) if v}


def _finite(value: float) -> float:
    # A window far off the reference can score beyond what JSON's numbers hold.
    return value if math.isfinite(value) else 1.7976931348623157e308


def monitor_report(monitor: Monitor, version: str) -> MonitorReport:
    """The report of ``monitor``'s current window."""
    snap = monitor.snapshot()
    spec, labels = monitor.spec, monitor.card.labels
    components: list[Component] = []
    channels: list[Shift] = []
    features: list[Shift] = []
    if snap.score is not None:
        descriptions = ["the input's training quantiles", *(t.description for t in spec.tensors)]
        rate = -math.log10(spec.false_alarm_rate)
        for name, what, raw, tail in zip(
            monitor.scorer.names,
            descriptions,
            snap.score.components.tolist(),
            snap.score.log10_tail.tolist(),
            strict=True,
        ):
            surprise = _finite(-tail)
            components.append(
                Component(
                    name=name,
                    description=what,
                    score=_finite(raw),
                    surprise=surprise,
                    shifted=surprise > rate,
                )
            )
        top_channels, top_features = monitor.most_shifted(snap.score)
        channels = [Shift(name=n, value=_finite(v)) for n, v in top_channels]
        features = [Shift(name=n, value=_finite(v)) for n, v in top_features]
    data = monitor.card.data
    counts = None if data is None or data.class_counts is None else np.asarray(data.class_counts)
    window = snap.class_window / max(snap.samples, 1)
    training = None if counts is None or counts.sum() == 0 else counts / counts.sum()
    names = [r.name for r in spec.ranges]
    return MonitorReport(
        enabled=True,
        model_version=version,
        window_size=monitor.window,
        samples_in_window=snap.samples,
        samples_seen=snap.seen,
        calibrated_window=snap.calibrated_window,
        drift=snap.drift,
        score=None if snap.score is None else _finite(snap.score.overall),
        threshold=snap.threshold,
        false_alarm_rate=spec.false_alarm_rate,
        components=components,
        most_shifted_channels=channels,
        most_shifted_features=features,
        input_out_of_range=OutOfRange(
            samples=snap.range_samples,
            rate=snap.out_of_range_any,
            clean_rate=spec.clean_out_of_range_rate,
            by_feature=_nonzero(names, snap.out_of_range_window),
            total={k: int(v) for k, v in _nonzero(names, snap.out_of_range_total).items()},
        ),
        predictions=Predictions(
            window=dict(zip(labels, window.tolist(), strict=True)),
            training=None
            if training is None
            else dict(zip(labels, training.tolist(), strict=True)),
            total_variation=None
            if training is None or not snap.samples
            else float(np.abs(window - training).sum() / 2),
            total=dict(zip(labels, snap.class_total.tolist(), strict=True)),
        ),
        non_finite_skipped=snap.non_finite,
    )


def build_monitor_router(slot: Slot, enabled: bool) -> APIRouter:
    """``GET /monitor`` for the model in ``slot`` (``enabled``: the MONITOR setting)."""
    router = APIRouter(tags=["Model"])

    @router.get("/monitor", response_model=MonitorReport)
    async def monitor() -> MonitorReport:
        """Drift of the recent inputs from the training distribution, from the model's own
        BatchNorm statistics and input quantiles (no training data needed)."""
        predictor = slot.get()
        version = predictor.version
        if predictor.monitor is not None:
            return monitor_report(predictor.monitor, version)
        reason = (
            "monitoring is off (MONITOR=off)"
            if not enabled
            else "the model card has no monitor reference (export it with this bnfold version)"
        )
        return MonitorReport(enabled=False, reason=reason, model_version=version)

    return router
