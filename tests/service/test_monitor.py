"""Drift monitoring through the HTTP API: /monitor, warnings, metrics, MONITOR=off.

The models are real exports (``monitored_dir``): the committed digits CNN and a wine
MLP. The shifted inputs are the digits test split at half contrast, which the
benchmark shows is detected in every window of 64.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import make_settings

from bnfold import digest
from service.app import create_app
from training.data import load_splits, make_data_spec

JSON = {"content-type": "application/json"}


def post(client: TestClient, path: str, body: Any) -> Any:
    return client.post(path, content=json.dumps(body).encode(), headers=JSON)


@pytest.fixture(scope="module")
def digits_test() -> np.ndarray:
    return load_splits(make_data_spec("digits")).test.X


def send(client: TestClient, images: np.ndarray) -> list[dict[str, Any]]:
    bodies = []
    for image in images:
        response = post(client, "/predict", {"image": image[0].tolist()})
        assert response.status_code == 200
        bodies.append(response.json())
    return bodies


def test_monitor_reports_an_empty_window_then_scores_clean_traffic(
    digits_monitored: TestClient, digits_test: np.ndarray
) -> None:
    empty = digits_monitored.get("/monitor").json()
    assert empty["enabled"] is True and empty["window_size"] == 64
    assert empty["samples_in_window"] == 0 and empty["drift"] is None and empty["score"] is None
    send(digits_monitored, digits_test[:8])
    few = digits_monitored.get("/monitor").json()
    assert few["samples_in_window"] == 8 and few["drift"] is None  # smallest calibration is 16

    send(digits_monitored, digits_test[8:100])
    report = digits_monitored.get("/monitor").json()
    assert report["samples_seen"] == 100 and report["samples_in_window"] == 64
    assert report["calibrated_window"] == 64
    assert report["drift"] is False and report["score"] <= report["threshold"]
    assert [c["name"] for c in report["components"]] == [
        "input quantiles",
        "layers.1",
        "layers.4",
        "layers.7",
    ]
    assert report["input_out_of_range"]["rate"] == 0.0
    predictions = report["predictions"]
    assert sum(predictions["total"].values()) == 100
    assert predictions["window"].keys() == predictions["training"].keys()
    assert pytest.approx(sum(predictions["window"].values())) == 1.0
    assert predictions["total_variation"] < 0.3


def test_a_shift_is_detected_and_named(
    digits_monitored: TestClient, digits_test: np.ndarray
) -> None:
    mean = digits_test.mean(axis=(1, 2, 3), keepdims=True)
    dimmed = mean + 0.5 * (digits_test - mean)
    send(digits_monitored, dimmed[:64])
    report = digits_monitored.get("/monitor").json()
    assert report["drift"] is True and report["score"] > report["threshold"]
    assert any(c["shifted"] for c in report["components"])
    assert len(report["most_shifted_channels"]) == 5
    assert report["most_shifted_channels"][0]["name"].split("[")[0] in {
        "layers.1",
        "layers.4",
        "layers.7",
    }
    assert report["most_shifted_features"][0]["name"] == "channel 0"


def test_out_of_range_input_is_answered_with_warnings(
    digits_monitored: TestClient, digits_test: np.ndarray
) -> None:
    image = digits_test[0, 0].copy()
    clean = post(digits_monitored, "/predict", {"image": image.tolist()}).json()
    assert "warnings" not in clean
    image[3, 3] = 255.0  # pixels are 0..16 in training
    response = post(digits_monitored, "/predict", {"image": image.tolist()})
    assert response.status_code == 200
    body = response.json()
    assert body["warnings"] == ["channel 0 is outside the training range 0 to 16"]
    assert body["label"] in body["probabilities"]
    batch = post(
        digits_monitored,
        "/predict/batch",
        {"samples": [{"image": digits_test[1, 0].tolist()}, {"image": image.tolist()}]},
    ).json()["predictions"]
    assert "warnings" not in batch[0] and batch[1]["warnings"] == body["warnings"]
    assert batch[1]["probabilities"] == body["probabilities"]
    report = digits_monitored.get("/monitor").json()["input_out_of_range"]
    assert report["total"] == {"channel 0": 2} and report["samples"] == 4
    assert report["rate"] == pytest.approx(0.5)


def test_reject_policy_refuses_out_of_range_input(
    monitored_dir: Path, digits_test: np.ndarray
) -> None:
    settings = make_settings(monitored_dir / "digits" / "model.onnx", out_of_range="reject")
    with TestClient(create_app(settings)) as client:
        image = digits_test[0, 0].copy()
        image[0, 0] = -1.0
        response = post(client, "/predict", {"image": image.tolist()})
        assert response.status_code == 422
        assert response.json() == {"error": "channel 0 is outside the training range 0 to 16"}
        batch = post(
            client,
            "/predict/batch",
            {"samples": [{"image": digits_test[1, 0].tolist()}, {"image": image.tolist()}]},
        )
        assert batch.status_code == 422 and batch.json()["error"].startswith("samples[1]: ")
        report = client.get("/monitor").json()
        assert report["samples_seen"] == 0  # refused samples never reach the window
        assert report["input_out_of_range"]["total"] == {"channel 0": 2}


def test_tabular_warnings_name_the_feature_and_its_range(monitored_dir: Path) -> None:
    path = monitored_dir / "wine" / "model.onnx"
    card = digest.check(path.read_bytes())
    assert card.monitor is not None
    alcohol = card.monitor.ranges[0]
    splits = load_splits(make_data_spec("wine"))
    row = splits.test.X[0].tolist()
    row[0] = alcohol.max + 5.0
    with TestClient(create_app(make_settings(path))) as client:
        body = post(client, "/predict", {"features": row}).json()
        limits = f"{alcohol.min:g} to {alcohol.max:g}"
        assert body["warnings"] == [
            f"feature {alcohol.name!r} is outside the training range {limits}"
        ]
        metrics = client.get("/metrics").text
        assert f'bnfold_input_out_of_range_total{{feature="{alcohol.name}"}} 1.0' in metrics


def test_metrics_expose_drift_scores_detection_and_predictions(
    digits_monitored: TestClient, digits_test: np.ndarray
) -> None:
    before = digits_monitored.get("/metrics").text
    assert "bnfold_drift_detected 0.0" in before
    assert "bnfold_drift_score{" not in before  # no window yet
    bodies = send(digits_monitored, digits_test[:64])
    text = digits_monitored.get("/metrics").text
    report = digits_monitored.get("/monitor").json()
    assert "bnfold_monitor_window_samples 64.0" in text
    for layer in ("input quantiles", "layers.1", "layers.4", "layers.7", "overall"):
        assert f'bnfold_drift_score{{layer="{layer}"}}' in text
    assert f"bnfold_drift_detected {1.0 if report['drift'] else 0.0}" in text
    counts: dict[str, int] = {}
    for body in bodies:
        counts[body["label"]] = counts.get(body["label"], 0) + 1
    for label, count in counts.items():
        assert f'bnfold_predictions_total{{label="{label}"}} {float(count)}' in text


def test_monitor_off_changes_no_prediction_and_reports_why(
    monitored_dir: Path, digits_test: np.ndarray
) -> None:
    path = monitored_dir / "digits" / "model.onnx"
    images = digits_test[:20].copy()
    images[5, 0, 0, 0] = 40.0
    answers = {}
    for monitor in (True, False):
        with TestClient(create_app(make_settings(path, monitor=monitor))) as client:
            answers[monitor] = [
                post(client, "/predict", {"image": x[0].tolist()}).json() for x in images
            ]
            if not monitor:
                report = client.get("/monitor").json()
                assert report == {
                    **report,
                    "enabled": False,
                    "reason": "monitoring is off (MONITOR=off)",
                }
                assert "bnfold_drift" not in client.get("/metrics").text
    on, off = answers[True], answers[False]
    assert "warnings" in on[5] and all("warnings" not in a for a in off)
    assert [{k: v for k, v in a.items() if k != "warnings"} for a in on] == off


def test_a_card_without_monitor_reference_is_served_unmonitored(tabular: TestClient) -> None:
    report = tabular.get("/monitor").json()
    assert report["enabled"] is False and "no monitor reference" in report["reason"]
    assert report["samples_seen"] is None


def test_answers_come_from_the_graph_without_the_monitor_nodes(
    monitored_dir: Path, digits_test: np.ndarray
) -> None:
    from service.runtime import ModelRuntime

    path = monitored_dir / "digits" / "model.onnx"
    runtime = ModelRuntime.load(path)
    assert [o.name for o in runtime.session.get_outputs()] == ["logits", "probabilities"]
    assert runtime.monitor_session is not None
    whole = runtime.monitor_session
    assert [o.name for o in whole.get_outputs()][-1] == runtime.card.monitor.output
    for x in digits_test[:50]:
        lean = runtime.run(x[None])
        full = whole.run(["logits", "probabilities"], {"input": x[None]})
        for a, b in zip(lean, full, strict=True):
            np.testing.assert_array_equal(a, b)
    assert runtime._whole_answers  # checked at load: the whole graph answers bit-identically
    _, probs, stats = runtime.run_monitored(digits_test[:3])
    assert stats.shape == (3, runtime.card.monitor.columns)
    np.testing.assert_array_equal(probs, runtime.run(digits_test[:3])[1])
    assert ModelRuntime.load(path, monitor=False).monitor_session is None


def test_the_window_is_fed_within_its_time_budget(
    monitored_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.monitor import Monitor

    card = digest.check((monitored_dir / "digits" / "model.onnx").read_bytes())
    clock = [100.0]
    monkeypatch.setattr("service.monitor.time.perf_counter", lambda: clock[0])
    monitor = Monitor(card, 64, share=0.05)
    assert monitor.due()  # nothing fed yet
    monitor.spent(0.001)  # the whole graph ran 1 ms: wait 19 ms
    assert not monitor.due()
    clock[0] += 0.0189
    assert not monitor.due()
    clock[0] += 0.0002
    assert monitor.due()
    with pytest.raises(ValueError, match="share"):
        Monitor(card, 64, share=0.0)


def test_a_busy_service_feeds_part_of_the_traffic_and_answers_all_the_same(
    monitored_dir: Path, digits_test: np.ndarray
) -> None:
    path = monitored_dir / "digits" / "model.onnx"
    answers = []
    for share in (1.0, 0.01):
        with TestClient(create_app(make_settings(path, monitor_share=share))) as client:
            bodies = send(client, digits_test[:40])
            report = client.get("/monitor").json()
            answers.append([b["probabilities"] for b in bodies])
            assert sum(report["predictions"]["total"].values()) == 40  # every answer counted
            assert report["input_out_of_range"]["samples"] == 40  # every input checked
            fed = report["samples_seen"]
        assert fed == 40 if share == 1.0 else 1 <= fed < 40
    assert answers[0] == answers[1]
