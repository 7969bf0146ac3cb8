"""The real exported digits model (``models/digits/model.onnx``, or ``BNFOLD_REAL_MODEL``).

The startup checks and the answers are compared with facts established without
the service: the BatchNormalization count and the card read with ``onnx``, and
the probabilities of the UNFOLDED PyTorch model in eval mode (the training
checkpoint next to the model), in float64.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import REAL_MODEL, make_settings

from service.app import create_app
from service.runtime import ModelRuntime

CHECKPOINT = REAL_MODEL.with_name("checkpoint.pt")


def _bn_nodes(graph: object) -> int:
    """BatchNormalization nodes in ``graph`` and its subgraphs, counted with ``onnx``."""
    import onnx

    count = 0
    for node in graph.node:  # type: ignore[attr-defined]
        count += node.op_type == "BatchNormalization"
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            count += sum(_bn_nodes(g) for g in subgraphs)
    return count


def test_real_model_passes_every_startup_check_and_reports_what_it_measured() -> None:
    import onnx

    model = onnx.load(REAL_MODEL)
    card = json.loads(next(p.value for p in model.metadata_props if p.key == "bnfold.card"))
    runtime = ModelRuntime.load(REAL_MODEL)
    assert runtime.checks["batch_normalization_nodes"] == _bn_nodes(model.graph) == 0
    assert runtime.checks["digest"] == card["digest"]
    assert runtime.checks["golden_samples"] == len(card["golden"]) >= 1
    # The worst golden delta, recomputed with a session of our own.
    import onnxruntime as ort

    session = ort.InferenceSession(REAL_MODEL.read_bytes(), providers=["CPUExecutionProvider"])
    shape = card["input"]["shape"][1:]
    worst = max(
        float(
            np.max(
                np.abs(
                    session.run(
                        ["probabilities"],
                        {"input": np.asarray(g["input"], np.float32).reshape(1, *shape)},
                    )[0][0]
                    - np.asarray(g["probabilities"], np.float32)
                )
            )
        )
        for g in card["golden"]
    )
    assert runtime.checks["golden_max_abs_delta"] == pytest.approx(worst, abs=1e-9)
    assert worst <= card["golden_tolerance"]


def _oracle(samples: np.ndarray) -> np.ndarray:
    """Probabilities of the unfolded PyTorch eval model, in float64."""
    torch = pytest.importorskip("torch")
    from training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(CHECKPOINT)
    net = ckpt.build().double().eval()
    std = ckpt.standardization
    axis = (1, -1, 1, 1) if samples.ndim == 4 else (1, -1)
    x = (samples - np.asarray(std.mean).reshape(axis)) / np.asarray(std.std).reshape(axis)
    with torch.inference_mode():
        return torch.softmax(net(torch.from_numpy(x)), dim=1).numpy()


@pytest.mark.skipif(not CHECKPOINT.exists(), reason="no training checkpoint next to the model")
def test_real_model_answers_as_the_unfolded_network_alone_in_batch_and_v2() -> None:
    with TestClient(create_app(make_settings(REAL_MODEL))) as client:
        card = client.app.state.slot.get().runtime.card  # type: ignore[attr-defined]
        shape = card.input.sample_shape
        key = "image" if card.input.kind == "image" else "features"
        rng = np.random.default_rng(0)
        golden = [np.asarray(g.input, np.float64).reshape(shape) for g in card.golden[:4]]
        noisy = [np.clip(g + rng.normal(0, 2, g.shape), 0, 16) for g in golden]
        samples = np.stack(golden + noisy)

        def body(x: np.ndarray) -> dict[str, object]:
            x32 = x.astype(np.float32)
            return {key: x32.tolist() if key == "image" else x32.ravel().tolist()}

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
                        "data": samples.astype(np.float32).ravel().tolist(),
                    }
                ]
            },
        ).json()
        probs = next(o for o in v2["outputs"] if o["name"] == "probabilities")["data"]
        served = np.array([list(a["probabilities"].values()) for a in alone])
        np.testing.assert_array_equal(np.asarray(probs).reshape(served.shape), served)
        expected = _oracle(samples.astype(np.float32).astype(np.float64))
        np.testing.assert_allclose(served, expected, atol=card.golden_tolerance)
        assert [a["class_index"] for a in alone] == list(expected.argmax(axis=1))
