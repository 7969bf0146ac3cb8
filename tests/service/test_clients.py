"""The real Open Inference Protocol clients against the service under uvicorn.

``tritonclient[http]`` is in the ``dev`` extra. ``kserve`` is not: it pins
protobuf < 7 (onnx here uses 7) and pulls in kubernetes, grpcio and pandas, so it
lives in its own virtual environment, named by ``KSERVE_PYTHON``::

    python -m venv /tmp/kserve-venv && /tmp/kserve-venv/bin/pip install kserve
    KSERVE_PYTHON=/tmp/kserve-venv/bin/python pytest tests/service/test_clients.py
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import httpx
import numpy as np
import pytest

from bnfold.card import ModelCard

pytestmark = pytest.mark.slow


def golden_batch(card: ModelCard) -> np.ndarray:
    return np.asarray([g.input for g in card.golden], np.float32).reshape(-1, 1, 8, 8)


def predict_alone(url: str, sample: np.ndarray) -> list[float]:
    body = {"image": sample.reshape(8, 8).tolist()}
    return list(httpx.post(f"{url}/predict", json=body).json()["probabilities"].values())


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient(live_image: str, image_card: ModelCard, binary: bool) -> None:
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(url=live_image.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("digits")
        assert client.get_server_metadata()["name"] == "bnfold"
        meta = client.get_model_metadata("digits")
        assert meta["inputs"][0]["shape"] == [-1, 1, 8, 8]

        batch = golden_batch(image_card)
        tensor = http.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch, binary_data=binary)  # True is the client's default
        result = client.infer("digits", [tensor], request_id="tc-1")
        assert result.get_response()["id"] == "tc-1"
        probs = result.as_numpy("probabilities")
        assert probs.shape == (3, 10)
        for row, sample in zip(probs, batch, strict=True):
            assert row.tolist() == pytest.approx(predict_alone(live_image, sample), abs=0)
        np.testing.assert_allclose(probs, [g.probabilities for g in image_card.golden], atol=1e-6)

        wrong = http.InferInput("input", [1, 64], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 64), np.float32), binary_data=binary)
        with pytest.raises(Exception, match=r"shape must be \[N, 1, 8, 8\]"):
            client.infer("digits", [wrong])
        with pytest.raises(Exception, match="unknown model: this server serves 'digits'"):
            client.get_model_metadata("nope")
    finally:
        client.close()


KSERVE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    import httpx, numpy as np
    from kserve import InferenceRESTClient, RESTConfig, InferRequest, InferInput

    async def main(url, data):
        batch = np.asarray(data, np.float32)
        out = {}
        async with InferenceRESTClient(RESTConfig(protocol="v2", retries=1)) as client:
            out["live"] = await client.is_server_live(url)
            out["ready"] = await client.is_server_ready(url)
            out["model_ready"] = await client.is_model_ready(url, "digits")
            for binary in (False, True):
                tensor = InferInput("input", list(batch.shape), "FP32")
                tensor.set_data_from_numpy(batch, binary_data=binary)
                request = InferRequest("digits", [tensor], request_id=f"ks-{binary}")
                result = await client.infer(url, request, model_name="digits")
                probs = [o for o in result.outputs if o.name == "probabilities"][0]
                out[f"id_{binary}"] = result.id
                out[f"probs_{binary}"] = probs.as_numpy().tolist()
            try:
                await client.infer(url, InferRequest("nope", [tensor]), model_name="nope")
            except httpx.HTTPStatusError as exc:
                out["error"] = str(exc)
        print(json.dumps(out))

    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
    """
)


def test_kserve_rest_client(live_image: str, image_card: ModelCard) -> None:
    python = os.environ.get("KSERVE_PYTHON")
    if not python:
        pytest.skip("set KSERVE_PYTHON to a Python with kserve installed (see module docstring)")
    batch = golden_batch(image_card)
    result = subprocess.run(
        [python, "-c", KSERVE_SCRIPT, live_image, json.dumps(batch.tolist())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["live"] is True and out["ready"] is True and out["model_ready"] is True
    assert out["id_False"] == "ks-False" and out["id_True"] == "ks-True"
    alone = [predict_alone(live_image, s) for s in batch]
    assert out["probs_False"] == out["probs_True"] == alone
    assert "404" in out["error"]
