"""Prometheus metrics: counts by route and status, histograms, model load time."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.metrics import Metrics


def _value(text: str, prefix: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert lines, prefix
    return float(lines[0].rsplit(" ", 1)[1])


def test_counts_by_route_template_and_status(image: TestClient) -> None:
    image.post("/predict", json={})
    image.post("/predict", json={})
    image.get("/v2/models/digits")
    image.get("/v2/models/unknown")
    image.get("/no/such/path")
    text = image.get("/metrics").text
    assert _value(text, 'bnfold_requests_total{route="/predict",status="422"}') == 2
    assert _value(text, 'bnfold_requests_total{route="/v2/models/{model_name}",status="200"}') == 1
    assert _value(text, 'bnfold_requests_total{route="/v2/models/{model_name}",status="404"}') == 1
    assert _value(text, 'bnfold_requests_total{route="unmatched",status="404"}') == 1
    assert "/no/such/path" not in text


def test_latency_inference_and_load_time(image: TestClient) -> None:
    image.post(
        "/v2/models/digits/infer",
        json={
            "inputs": [
                {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
            ]
        },
    )
    text = image.get("/metrics").text
    assert _value(text, "bnfold_inference_duration_seconds_count") == 1
    assert (
        _value(text, 'bnfold_request_duration_seconds_count{route="/v2/models/{model_name}/infer"}')
        == 1
    )
    assert _value(text, "bnfold_model_load_seconds") > 0
    assert 'bnfold_model_info{name="digits"' in text
    assert image.get("/metrics").headers["content-type"].startswith("text/plain")


def test_registries_are_per_app() -> None:
    a, b = Metrics(), Metrics()
    a.record("/x", 200, 0.1)
    assert b"/x" not in b.render()


def test_request_histograms_equal_prometheus_clients_own() -> None:
    # The oracle: prometheus-client's Histogram fed the same observations.
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from service.metrics import _LATENCY

    registry = CollectorRegistry()
    oracle = Histogram("h", "h", ("route",), buckets=_LATENCY, registry=registry)
    metrics = Metrics()
    values = [0.0, 0.0005, 0.00050001, 0.003, 0.0999, 0.1, 0.25, 1.0, 7.5] * 3
    for i, value in enumerate(values):
        route = "/a" if i % 2 else "/b"
        oracle.labels(route).observe(value)
        metrics.record(route, 200, value)

    def series(text: str, name: str) -> dict[str, float]:
        out = {}
        for line in text.splitlines():
            if line.startswith(name + "_") and not line.startswith(name + "_created"):
                key, value = line.rsplit(" ", 1)
                labels = key[key.index("{") + 1 : -1].split(",")
                out[key.split("{")[0] + "," + ",".join(sorted(labels))] = float(value)
        return out

    want = series(generate_latest(registry).decode(), "h")
    got = series(metrics.render().decode(), "bnfold_request_duration_seconds")
    assert {k.replace("bnfold_request_duration_seconds", "h"): v for k, v in got.items()} == want
    assert len(want) == 2 * (len(_LATENCY) + 3)  # buckets, +Inf, count and sum per route

    # The same series exist, ``_created`` (a timestamp, so not compared) included.
    def names(text: str, prefix: str) -> set[str]:
        return {line.split(" ")[0] for line in text.splitlines() if line.startswith(prefix)}

    created = names(metrics.render().decode(), "bnfold_request_duration_seconds_created")
    assert {n.replace("bnfold_request_duration_seconds", "h") for n in created} == names(
        generate_latest(registry).decode(), "h_created"
    )
    assert len(created) == 2


def test_every_series_prometheus_client_would_export_is_exported() -> None:
    # The oracle: the counter and histograms as prometheus-client itself kept them before.
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from service.metrics import _INFERENCE, _LATENCY

    registry = CollectorRegistry()
    requests = Counter("bnfold_requests", "r", ("route", "status"), registry=registry)
    latency = Histogram(
        "bnfold_request_duration_seconds", "l", ("route",), buckets=_LATENCY, registry=registry
    )
    inference = Histogram(
        "bnfold_inference_duration_seconds", "i", buckets=_INFERENCE, registry=registry
    )
    metrics = Metrics()
    for route, status, seconds in (("/predict", 200, 0.002), ("/x", 404, 0.01)):
        requests.labels(route, str(status)).inc()
        latency.labels(route).observe(seconds)
        metrics.record(route, status, seconds)
    inference.observe(0.0001)
    metrics.observe_inference(0.0001)

    def series(text: str) -> set[str]:
        return {
            line.rsplit(" ", 1)[0]
            for line in text.splitlines()
            if line.startswith(("bnfold_requests", "bnfold_request_", "bnfold_inference"))
        }

    assert series(metrics.render().decode()) == series(generate_latest(registry).decode())
