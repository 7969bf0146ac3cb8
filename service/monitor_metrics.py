"""The drift monitor's Prometheus metrics, computed at scrape time from the served model's
monitor (nothing on the request path): a custom collector in the app's registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from service.predictor import Slot

__all__ = ["MonitorCollector"]


class MonitorCollector:
    """Yields the monitor's metrics for whatever model ``slot`` serves at the moment."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot

    def describe(self) -> list[Metric]:
        """Nothing to declare up front: the metrics depend on the loaded model."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metrics of the current window (none while no monitored model is loaded)."""
        predictor = self.slot.predictor
        monitor = None if predictor is None else predictor.monitor
        if monitor is None:
            return
        snap = monitor.snapshot()
        samples = GaugeMetricFamily(
            "bnfold_monitor_window_samples", "Samples in the drift monitor's window."
        )
        samples.add_metric([], snap.samples)
        yield samples
        score = GaugeMetricFamily(
            "bnfold_drift_score",
            "Drift surprise: -log10 of the share of clean windows scoring as high, per "
            "component (the input's quantiles, each folded BatchNorm) and overall.",
            labels=["layer"],
        )
        detected = GaugeMetricFamily(
            "bnfold_drift_detected", "1 if the overall drift score exceeds its threshold."
        )
        if snap.score is not None and snap.threshold is not None:
            for name, tail in zip(
                monitor.scorer.names, snap.score.log10_tail.tolist(), strict=True
            ):
                score.add_metric([name], -tail)
            score.add_metric(["overall"], snap.score.overall)
            threshold = GaugeMetricFamily(
                "bnfold_drift_threshold", "The overall score's calibrated threshold."
            )
            threshold.add_metric([], snap.threshold)
            yield threshold
        detected.add_metric([], 1.0 if snap.drift else 0.0)
        yield score
        yield detected
        out_of_range = CounterMetricFamily(
            "bnfold_input_out_of_range",
            "Samples with a value outside the training range, per feature (image: channel).",
            labels=["feature"],
        )
        for name, count in zip(
            monitor.scorer.features, snap.out_of_range_total.tolist(), strict=True
        ):
            if count:
                out_of_range.add_metric([name], count)
        yield out_of_range
        predictions = CounterMetricFamily(
            "bnfold_predictions", "Predictions per predicted label.", labels=["label"]
        )
        for label, count in zip(monitor.card.labels, snap.class_total.tolist(), strict=True):
            predictions.add_metric([label], count)
        yield predictions
