"""Prometheus metrics (prometheus-client) and the ASGI middleware that records them.

Each app owns its registry, so that several apps (tests) never share counters.
With several uvicorn workers each worker counts its own requests.

The per-request metrics (requests by route and status, request and inference
durations) are plain counts kept by ``_Histogram`` and turned into Prometheus
families only when ``/metrics`` is scraped: prometheus-client's own histograms
take a lock and walk their buckets on every observation, which cost more than
the model's validation on the request path. Every update happens on the event
loop, like the scrape, so no lock is needed.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.samples import Sample
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.limits import BACKOFF

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

# Latency buckets sized for a sub-millisecond model behind HTTP.
_LATENCY = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_INFERENCE = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25)
UNMATCHED = "unmatched"  # one label for every unknown path: no unbounded label values
RELOAD_RESULTS = ("success", "refused", "unchanged")


class _Histogram:
    """Observation counts per bucket (``le`` bounds, then +Inf), their sum and when it began."""

    __slots__ = ("bounds", "counts", "created", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.created = time.time()  # the ``_created`` series, as prometheus-client exports

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, as Prometheus exposes them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class _RequestCollector:
    """Turns the per-request counts into Prometheus families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        requests = CounterMetricFamily(
            "bnfold_requests",
            "HTTP requests by route template and status code.",
            labels=("route", "status"),
        )
        latency = HistogramMetricFamily(
            "bnfold_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route.",
            labels=("route",),
        )
        for (route, status), (count, created, _) in sorted(m._requests.items()):
            requests.add_metric((route, str(status)), count[0], created=created)
        for route, histogram in sorted(m._latency.items()):
            _add_histogram(latency, {"route": route}, histogram)
        inference = HistogramMetricFamily(
            "bnfold_inference_duration_seconds", "Time spent in ONNX Runtime per request."
        )
        _add_histogram(inference, {}, m.inference)
        yield requests
        yield latency
        yield inference


def _add_histogram(family: HistogramMetricFamily, labels: dict[str, str], h: _Histogram) -> None:
    family.add_metric(list(labels.values()), h.buckets(), h.total)
    family.samples.append(Sample(family.name + "_created", labels, h.created))


class Metrics:
    """The service's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # (route, status) -> ([count], when that series began, the route's latency histogram)
        self._requests: dict[tuple[str, int], tuple[list[int], float, _Histogram]] = {}
        self._latency: dict[str, _Histogram] = {}
        self.inference = _Histogram(_INFERENCE)
        self.registry.register(_RequestCollector(self))
        self.load_seconds = Gauge(
            "bnfold_model_load_seconds",
            "Time to load and check the model (hash, BN count, golden samples).",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "bnfold_model_info",
            "The served model (value 1).",
            ("name", "version"),
            registry=self.registry,
        )
        self.reloads = Counter(
            "bnfold_model_reloads_total",
            "Model reloads (SIGHUP, or MODEL_POLL_SECONDS seeing MODEL_PATH change), by result: "
            "success (swapped in), refused (failed a startup check; the old model serves on), "
            "unchanged (the same model).",
            ("result",),
            registry=self.registry,
        )
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)  # every result exported from the start, at 0
        self.observe_inference = self.inference.observe

    def record(self, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        entry = self._requests.get((route, status))
        if entry is None:
            latency = self._latency.setdefault(route, _Histogram(_LATENCY))
            entry = self._requests[(route, status)] = ([0], time.time(), latency)
        entry[0][0] += 1
        entry[2].observe(seconds)

    def serving(self, name: str, version: str, load_seconds: float, previous: Any = None) -> None:
        """Point the model metrics at the model now served (``previous``: the one it replaced,
        a ``ModelRuntime``, whose info series goes away)."""
        if previous is not None:
            with contextlib.suppress(KeyError):
                self.model_info.remove(previous.name, previous.version)
        self.model_info.labels(name, version).set(1)
        self.load_seconds.set(load_seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead) timing every HTTP request.

    Since it sees every response start, it also reports each 4xx, with the time it
    took, to the connection's backoff (``service.protocol``, through the
    ``limits.BACKOFF`` scope extension), which saves every request a second wrapper.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if 400 <= status < 500:
                    report = scope.get("extensions", {}).get(BACKOFF, {}).get("report")
                    if report is not None:
                        report(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or UNMATCHED
            self.metrics.record(path, status, time.perf_counter() - start)
