"""The real exported digits model (``models/digits/model.onnx``, or ``BNFOLD_REAL_MODEL``)."""

from __future__ import annotations

import numpy as np
from conftest import REAL_MODEL, make_settings
from fastapi.testclient import TestClient

from service.app import create_app
from service.runtime import ModelRuntime


def test_real_model_passes_every_startup_check() -> None:
    runtime = ModelRuntime.load(REAL_MODEL)
    assert runtime.checks["batch_normalization_nodes"] == 0
    assert runtime.checks["golden_samples"] >= 1


def test_real_model_same_alone_in_batch_and_v2() -> None:
    with TestClient(create_app(make_settings(REAL_MODEL))) as client:
        card = client.app.state.slot.get().runtime.card  # type: ignore[attr-defined]
        shape = card.input.sample_shape
        key = "image" if card.input.kind == "image" else "features"
        samples = [np.asarray(g.input, np.float32).reshape(shape) for g in card.golden[:4]]

        def body(x: np.ndarray) -> dict[str, object]:
            return {key: x.tolist() if key == "image" else x.ravel().tolist()}

        alone = [client.post("/predict", json=body(x)).json() for x in samples]
        batch = client.post("/predict/batch", json={"samples": [body(x) for x in samples]})
        assert batch.json()["predictions"] == alone
        v2 = client.post(
            f"/v2/models/{card.name}/infer",
            json={
                "inputs": [
                    {
                        "name": card.input.name,
                        "shape": [len(samples), *shape],
                        "datatype": "FP32",
                        "data": np.stack(samples).ravel().tolist(),
                    }
                ]
            },
        ).json()
        probs = next(o for o in v2["outputs"] if o["name"] == "probabilities")["data"]
        classes = len(card.labels)
        for i, result in enumerate(alone):
            assert probs[i * classes : (i + 1) * classes] == list(result["probabilities"].values())
            golden = card.golden[i].probabilities
            assert (
                max(
                    abs(a - b)
                    for a, b in zip(golden, result["probabilities"].values(), strict=True)
                )
                <= card.golden_tolerance
            )
