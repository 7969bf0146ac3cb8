"""schemathesis against the app's own OpenAPI schema, every check, positive and negative.

Runs against the service under uvicorn, so that the schema is the one the
loaded model produced (request bodies derived from its card, exactly as the
server checks them: what the schema allows is answered, what it forbids is
refused with a 4xx). schemathesis' pytest plugin (``from_fixture``) fails under
pytest 9, so each operation's hypothesis strategy is driven directly.

One answer of the model itself no schema can rule out: a valid float32 input
far outside the training range may overflow the model's logits, and the
service then refuses it (422, "outputs are not finite"). Such a refusal of a
positive case is accepted only when an ONNX Runtime session of our own confirms
the overflow on the same input; anything else fails.

``BNFOLD_FUZZ_EXAMPLES`` sets the examples per operation and mode (CI: 25; the
long run in docs/service.md: 400).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, is_check_class, load_all_checks
from service_helpers import free_port, start_service, stop, wait_ready

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("BNFOLD_FUZZ_EXAMPLES", "25"))
OVERFLOW = "the model's outputs are not finite"
load_all_checks()
ALL_CHECKS = [c for c in CHECKS.get_all() if not is_check_class(c)]


@pytest.fixture(scope="module")
def fuzzed(model_dir: Path) -> Iterator[tuple[str, Path]]:
    """The image fixture model served with a small batch limit (the V2 schema has one
    branch per batch size)."""
    port = free_port()
    model = model_dir / "image.onnx"
    proc = start_service(model, port, env={"MAX_BATCH_SIZE": "3"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        yield url, model
    finally:
        stop(proc)


def _batch(path: str, body: Any) -> np.ndarray:
    """The float32 batch a positive case's body describes, built without the service."""
    if path.endswith("/infer"):
        tensor = body["inputs"][0]
        return np.asarray(tensor["data"], np.float64).astype(np.float32).reshape(tensor["shape"])
    samples = body["samples"] if path == "/predict/batch" else [body]  # [H][W] or [1][H][W]
    return np.stack([np.asarray(s["image"], np.float64).reshape(1, 8, 8) for s in samples]).astype(
        np.float32
    )


def _overflows(session: ort.InferenceSession, path: str, body: Any) -> bool:
    outputs = session.run(None, {"input": _batch(path, body)})
    return not all(np.isfinite(o).all() for o in outputs)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms(fuzzed: tuple[str, Path], mode: GenerationMode) -> None:
    url, model = fuzzed
    session = ort.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"])
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    overflows = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal overflows
            response = case.call(timeout=30)
            statuses[(case.operation.label, response.status_code)] += 1
            assert response.status_code < 500, (response.status_code, response.text[:200])
            if (
                mode is GenerationMode.POSITIVE
                and response.status_code == 422
                and OVERFLOW in response.text
                and _overflows(session, case.operation.path, case.body)
            ):
                overflows += 1
                return  # the model's arithmetic, confirmed independently
            case.validate_response(response, checks=ALL_CHECKS)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to break: no parameters, no body
    total = sum(statuses.values())
    print(f"\n{mode.name}: {total} cases, {overflows} verified overflows, checks {len(ALL_CHECKS)}")
    for (label, status), count in sorted(statuses.items()):
        print(f"  {label:55} {status} x{count}")
    labels = {label for label, _ in statuses}
    assert "POST /predict" in labels and "POST /v2/models/{model_name}/infer" in labels
    if mode is GenerationMode.POSITIVE:  # the data routes really answered valid data
        for label in ("POST /predict", "POST /predict/batch", "POST /v2/models/{model_name}/infer"):
            assert statuses[(label, 200)] > 0, label
