"""The data plane between HTTP and the runtime: validate, run, encode.

No HTTP here either: functions take parsed JSON and return response bytes, so
``/predict``, ``/predict/batch`` and ``/v2`` share one path to the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from service.errors import InvalidInput, NotReady
from service.images import ImageCodec, Upload
from service.inputs import SampleCodec
from service.jsonio import dumps
from service.monitor import Monitor
from service.runtime import ModelRuntime

Warnings = list[list[str]] | None  # per sample, when some sample is out of range


class Predictor:
    """One loaded model, its input codec, its drift monitor and its response encoding.

    ``monitor`` (None: not monitored) sees every sample that reaches the model;
    with ``reject_out_of_range`` a sample outside the training range is a 422
    instead of a prediction with ``warnings``.
    """

    def __init__(
        self,
        runtime: ModelRuntime,
        max_batch: int,
        observe: Callable[[float], None],
        monitor: Monitor | None = None,
        reject_out_of_range: bool = False,
    ) -> None:
        self.runtime = runtime
        self.codec = SampleCodec(runtime.card.input)
        self.images = ImageCodec(runtime.card.input)
        self.max_batch = max_batch
        self.observe = observe
        self.labels = runtime.labels
        self.version = runtime.version
        self.monitor = monitor
        self.reject_out_of_range = reject_out_of_range

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on a validated batch, timing the inference."""
        logits, probs, _ = self.run_checked(batch)
        return logits, probs

    def run_checked(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, Warnings]:
        """``run``, with the monitor's range check and window update; the warnings."""
        monitor = self.monitor
        warnings = None if monitor is None else monitor.check(batch)
        if warnings is not None and self.reject_out_of_range:
            raise InvalidInput(_rejection(warnings))
        fed = monitor is not None and monitor.due()
        start = time.perf_counter()
        if fed:
            logits, probs, stats = self.runtime.run_monitored(batch)
        else:
            logits, probs = self.runtime.run(batch)
        elapsed = time.perf_counter() - start
        self.observe(elapsed)
        if not (np.isfinite(logits).all() and np.isfinite(probs).all()):
            # Finite float32 inputs far outside the training range can overflow the logits.
            raise InvalidInput(
                "the model's outputs are not finite for this input "
                "(values far outside the range it was trained on?)"
            )
        if monitor is not None:
            classes = probs.argmax(axis=1)
            monitor.count(classes)
            if fed:
                monitor.observe(stats, classes, warnings is not None)
                monitor.spent(elapsed)
        return logits, probs, warnings

    def _result(self, probs: np.ndarray, warnings: list[str] | None = None) -> dict[str, Any]:
        index = int(probs.argmax())
        result = {
            "label": self.labels[index],
            "class_index": index,
            "probabilities": dict(zip(self.labels, probs.tolist(), strict=True)),
            "model_version": self.version,
        }
        if warnings:
            result["warnings"] = warnings
        return result

    def predict(self, payload: Any) -> bytes:
        """``/predict``: one sample (parsed JSON, or an image file ``Upload``) -> JSON bytes."""
        if isinstance(payload, Upload):
            sample = self.images.sample(payload)
        else:
            sample = self.codec.sample(payload)
        _, probs, warnings = self.run_checked(sample)
        return dumps(self._result(probs[0], warnings[0] if warnings else None))

    def predict_batch(self, payload: Any) -> bytes:
        """``/predict/batch``: ``{"samples": [...]}`` -> ``{"predictions": [...]}``."""
        if type(payload) is not dict or set(payload) != {"samples"}:
            raise InvalidInput("body must be an object with exactly one field, 'samples'")
        samples = payload["samples"]
        if type(samples) is not list or not samples:
            raise InvalidInput("samples must be a non-empty list of sample objects")
        if len(samples) > self.max_batch:
            raise InvalidInput(f"too many samples: {len(samples)} > limit {self.max_batch}")
        batch = np.concatenate(
            [self.codec.sample(s, f"samples[{i}].") for i, s in enumerate(samples)]
        )
        _, probs, warnings = self.run_checked(batch)
        each: list[list[str]] = warnings or [[]] * len(probs)
        return dumps(
            {"predictions": [self._result(p, w) for p, w in zip(probs, each, strict=True)]}
        )


def _rejection(warnings: list[list[str]]) -> str:
    """The 422 message for out-of-range samples (OUT_OF_RANGE=reject)."""
    if len(warnings) == 1:
        return "; ".join(warnings[0])
    first = next(i for i, w in enumerate(warnings) if w)
    return f"samples[{first}]: {'; '.join(warnings[first])}"


class Slot:
    """Holds the predictor once the model is loaded; ``get`` is 503 until then."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None

    def get(self) -> Predictor:
        """The loaded predictor, or ``NotReady``."""
        predictor = self.predictor
        if predictor is None:
            raise NotReady("the model is not loaded yet")
        return predictor
