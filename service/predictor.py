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
from service.runtime import ModelRuntime


class Predictor:
    """One loaded model, its input codec and its response encoding."""

    def __init__(
        self, runtime: ModelRuntime, max_batch: int, observe: Callable[[float], None]
    ) -> None:
        self.runtime = runtime
        self.codec = SampleCodec(runtime.card.input)
        self.images = ImageCodec(runtime.card.input)
        self.max_batch = max_batch
        self.observe = observe
        self.labels = runtime.labels
        self.version = runtime.version

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on a validated batch, timing the inference."""
        start = time.perf_counter()
        logits, probs = self.runtime.run(batch)
        self.observe(time.perf_counter() - start)
        if not (np.isfinite(logits).all() and np.isfinite(probs).all()):
            # Finite float32 inputs far outside the training range can overflow the logits.
            raise InvalidInput(
                "the model's outputs are not finite for this input "
                "(values far outside the range it was trained on?)"
            )
        return logits, probs

    def _result(self, probs: np.ndarray) -> dict[str, Any]:
        index = int(probs.argmax())
        return {
            "label": self.labels[index],
            "class_index": index,
            "probabilities": dict(zip(self.labels, probs.tolist(), strict=True)),
            "model_version": self.version,
        }

    def predict(self, payload: Any) -> bytes:
        """``/predict``: one sample (parsed JSON, or an image file ``Upload``) -> JSON bytes."""
        if isinstance(payload, Upload):
            sample = self.images.sample(payload)
        else:
            sample = self.codec.sample(payload)
        _, probs = self.run(sample)
        return dumps(self._result(probs[0]))

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
        _, probs = self.run(batch)
        return dumps({"predictions": [self._result(p) for p in probs]})


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
