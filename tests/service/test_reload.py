"""Model reload without downtime (service/reload.py), through the app with TestClient.

The reload runs on the app's own event loop (``client.portal``), as SIGHUP makes it run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import REPO, make_settings

from bnfold import digest
from service.app import create_app
from service.runtime import ModelRuntime

JSON = {"content-type": "application/json"}


def version_of(path: Path) -> str:
    return digest.check(path.read_bytes()).version


def put(source: Path, target: Path) -> None:
    """Replace ``target`` by a copy of ``source`` in one rename, as a deploy step should."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def reload(client: TestClient) -> str:
    reloader = client.app.state.reloader  # type: ignore[attr-defined]
    return str(client.portal.call(reloader.reload, "test"))  # type: ignore[union-attr]


def reloads(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    found = re.findall(r'^bnfold_model_reloads_total\{result="(\w+)"\} (\S+)$', text, re.M)
    return {result: float(value) for result, value in found}


def served_info(client: TestClient) -> list[tuple[str, str]]:
    text = client.get("/metrics").text
    return re.findall(r'^bnfold_model_info\{name="([^"]+)",version="(\w+)"\} 1\.0$', text, re.M)


def predict_tabular(client: TestClient) -> dict[str, Any]:
    body = {"features": [5.1, 3.5, 1.4, 0.2]}
    response = client.post("/predict", content=json.dumps(body), headers=JSON)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture()
def serving(model_dir: Path, tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """The tabular fixture model served from a file of its own, which tests replace."""
    path = tmp_path / "model.onnx"
    shutil.copyfile(model_dir / "tabular.onnx", path)
    with TestClient(create_app(make_settings(path))) as client:
        yield client, path


@pytest.fixture(scope="module")
def other_tabular(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another valid tabular model (other weights, so another version)."""
    import svc_models

    model, _ = svc_models.tabular_model(seed=7)
    return svc_models.save(model, tmp_path_factory.mktemp("other") / "other.onnx")


def test_a_new_file_is_swapped_in_and_everything_follows(
    serving: tuple[TestClient, Path], model_dir: Path, other_tabular: Path
) -> None:
    client, path = serving
    old, new = version_of(path), version_of(other_tabular)
    assert predict_tabular(client)["model_version"] == old
    assert reloads(client) == {"success": 0.0, "refused": 0.0, "unchanged": 0.0}
    put(other_tabular, path)
    assert reload(client) == "success"
    assert predict_tabular(client)["model_version"] == new
    info = client.get("/model").json()
    assert info["model_version"] == new and info["card"]["digest"].startswith(new)
    assert served_info(client) == [("iris", new)]  # the old model's series is gone
    assert reloads(client)["success"] == 1.0
    # A model of another kind: the request schema and the docs follow too.
    put(model_dir / "image.onnx", path)
    assert reload(client) == "success"
    assert (
        client.post("/predict", content=b'{"features": [1, 2, 3, 4]}', headers=JSON).status_code
        == 422
    )
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "image" in json.dumps(body["schema"])
    assert client.get("/model").json()["model_version"] == version_of(model_dir / "image.onnx")


@pytest.mark.parametrize(
    "breakage",
    ["truncated", "hash_mismatch", "batchnorm", "wrong_golden", "no_card", "missing", "folder"],
)
def test_a_file_that_fails_a_startup_check_is_refused_and_the_old_model_serves_on(
    serving: tuple[TestClient, Path],
    model_dir: Path,
    breakage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, path = serving
    old = version_of(path)
    if breakage == "truncated":  # an interrupted copy
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif breakage == "missing":
        path.unlink()
    elif breakage == "folder":
        path.unlink()
        path.mkdir()
    else:
        put(model_dir / f"{breakage}.onnx", path)
    with caplog.at_level(logging.INFO, logger="service"):
        assert reload(client) == "refused"
    lines = [r for r in caplog.records if "reload" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    message = lines[0].getMessage()
    assert len(message.splitlines()) == 1
    assert f"refused, still serving version {old}" in message
    assert predict_tabular(client)["model_version"] == old
    assert client.get("/model").json()["model_version"] == old
    assert reloads(client) == {"success": 0.0, "refused": 1.0, "unchanged": 0.0}
    assert client.get("/health/ready").status_code == 200


def test_an_unexpected_failure_while_loading_is_a_refusal_too(
    serving: tuple[TestClient, Path], caplog: pytest.LogCaptureFixture
) -> None:
    client, path = serving
    reloader = client.app.state.reloader  # type: ignore[attr-defined]

    def broken() -> Any:
        raise MemoryError("cannot allocate\nthe session")

    reloader.load = broken
    with caplog.at_level(logging.ERROR, logger="service"):
        assert reload(client) == "refused"
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.endswith(
        "refused, still serving version " + version_of(path) + ": MemoryError: cannot allocate"
    )
    assert predict_tabular(client)["model_version"] == version_of(path)


def test_a_pinned_digest_refuses_another_model(
    model_dir: Path, other_tabular: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.onnx"
    shutil.copyfile(model_dir / "tabular.onnx", path)
    settings = make_settings(path, model_digest=version_of(path))
    with TestClient(create_app(settings)) as client:
        put(other_tabular, path)
        assert reload(client) == "refused"
        assert client.get("/model").json()["model_version"] == version_of(
            model_dir / "tabular.onnx"
        )


def test_the_same_model_again_is_unchanged_and_keeps_the_monitor_window(
    serving: tuple[TestClient, Path], model_dir: Path
) -> None:
    client, path = serving
    predictor = client.app.state.slot.predictor  # type: ignore[attr-defined]
    put(model_dir / "tabular.onnx", path)  # a new file, the same model
    assert reload(client) == "unchanged"
    assert client.app.state.slot.predictor is predictor  # type: ignore[attr-defined]
    assert reloads(client)["unchanged"] == 1.0


def test_a_file_replaced_while_the_model_loaded_is_reloaded_at_startup(
    model_dir: Path, other_tabular: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.onnx"
    shutil.copyfile(model_dir / "tabular.onnx", path)
    loaded = ModelRuntime.load(path)  # what `python -m service` does before uvicorn starts
    put(other_tabular, path)
    with TestClient(create_app(make_settings(path), loaded)) as client:
        client.portal.call(client.app.state.reloader.wait)  # type: ignore[union-attr,attr-defined]
        assert client.get("/model").json()["model_version"] == version_of(other_tabular)


def test_requests_during_a_reload_make_one_more_reload(
    serving: tuple[TestClient, Path], other_tabular: Path
) -> None:
    client, path = serving
    reloader = client.app.state.reloader  # type: ignore[attr-defined]
    loading, go_on = threading.Event(), threading.Event()
    real = reloader.load

    def slow() -> Any:
        loading.set()
        go_on.wait(10)
        return real()

    reloader.load = slow

    async def scenario() -> None:
        put(other_tabular, path)
        reloader.request("first")
        await asyncio.to_thread(loading.wait, 10)
        for _ in range(2):  # while the first one loads: one more reload, not two
            reloader.request("during")
        go_on.set()
        await reloader.wait()

    client.portal.call(scenario)  # type: ignore[union-attr]
    assert reloads(client) == {"success": 1.0, "refused": 0.0, "unchanged": 1.0}


def test_polling_reloads_a_changed_file_and_refuses_a_bad_one_once(
    model_dir: Path, other_tabular: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.onnx"
    shutil.copyfile(model_dir / "tabular.onnx", path)
    with TestClient(create_app(make_settings(path, model_poll_seconds=0.1))) as client:
        put(other_tabular, path)
        until(lambda: client.get("/model").json()["model_version"] == version_of(other_tabular))
        path.write_bytes(b"not a model")
        until(lambda: reloads(client)["refused"] == 1.0)
        time.sleep(0.5)  # five more polls: the same bad file is not tried again
        assert reloads(client) == {"success": 1.0, "refused": 1.0, "unchanged": 0.0}
        assert client.get("/model").json()["model_version"] == version_of(other_tabular)


def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def adapted(monitored_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The digits model recalibrated (AdaBN) on its brightness-shifted training split, and
    the shifted test split."""
    from training.checkpoint import load_checkpoint
    from training.data import load_splits
    from training.recalibrate import recalibrate_checkpoint

    checkpoint = REPO / "models" / "digits" / "checkpoint.pt"
    splits = load_splits(load_checkpoint(checkpoint).data_spec)
    folder = tmp_path_factory.mktemp("adapted")
    np.savez(folder / "bright.npz", X=np.clip(splits.train.X + 4, 0, 16))
    result = recalibrate_checkpoint(
        checkpoint,
        folder / "bright.npz",
        folder / "run",
        parent=monitored_dir / "digits" / "model.onnx",
        verify_samples=16,
    )
    return result.export.path, np.clip(splits.test.X + 4, 0, 16)


@pytest.mark.slow  # a recalibration first
def test_the_drift_monitor_restarts_on_the_new_models_reference(
    monitored_dir: Path, adapted: tuple[Path, Any], tmp_path: Path
) -> None:
    model, shifted = adapted
    path = tmp_path / "model.onnx"
    shutil.copyfile(monitored_dir / "digits" / "model.onnx", path)
    with TestClient(create_app(make_settings(path, monitor_window=64))) as client:
        for image in shifted[:64]:
            body = json.dumps({"image": image[0].tolist()})
            assert client.post("/predict", content=body, headers=JSON).status_code == 200
        assert client.get("/monitor").json()["drift"] is True  # brighter than training
        put(model, path)
        assert reload(client) == "success"
        report = client.get("/monitor").json()
        assert report["samples_seen"] == 0  # a new window, on the recalibrated reference
        for image in shifted[64:128]:
            body = json.dumps({"image": image[0].tolist()})
            response = client.post("/predict", content=body, headers=JSON)
            assert response.json()["model_version"] == version_of(model)
        assert client.get("/monitor").json()["drift"] is False  # its own domain now
