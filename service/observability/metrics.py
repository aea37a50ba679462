"""Prometheus metrics: HTTP traffic by endpoint and status, and the batcher's counters.

Each app gets its own registry (several apps can live in one process, as in tests).
The batcher's counters have one source of truth, :class:`~service.core.batcher.BatcherStats`;
a custom collector exports them at scrape time, per model version, instead of mirroring
every increment.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.edge.gate import passage_of
from service.repository.repository import ModelRepository

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# xception_rejected{reason=...} ← the BatcherStats counter it exports.
REJECTION_REASONS = {
    "queue_full": "rejected_queue_full",
    "queue_wait": "rejected_queue_wait",
    "deadline": "dropped_expired",
    "cancelled": "dropped_cancelled",
}
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RepositoryCollector(Collector):
    """Exports every loaded version's batcher stats and queue depth, labelled ``model`` and
    ``version``, and each known version's state, at scrape time."""

    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "version"]
        state = GaugeMetricFamily(
            "xception_model_state",
            "1 for the state each model version is in",
            labels=[*labels, "state"],
        )
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "queue_depth": GaugeMetricFamily(
                "xception_queue_depth", "Images waiting for inference", labels=labels
            ),
            "images": CounterMetricFamily(
                "xception_images", "Images run through the model", labels=labels
            ),
            "batches": CounterMetricFamily("xception_batches", "Batches run", labels=labels),
            "failed_batches": CounterMetricFamily(
                "xception_failed_batches", "Batches whose inference raised", labels=labels
            ),
            "inference_seconds": CounterMetricFamily(
                "xception_inference_seconds", "Time spent in the model", labels=labels
            ),
        }
        rejected = CounterMetricFamily(
            "xception_rejected",
            "Work refused or dropped before inference",
            labels=[*labels, "reason"],
        )
        batch_size = HistogramMetricFamily("xception_batch_size", "Images per batch", labels=labels)
        engine = GaugeMetricFamily(
            "xception_engine_info",
            "1 for the engine serving each loaded version, and how it was chosen",
            labels=[*labels, "engine", "how"],
        )
        trial = GaugeMetricFamily(
            "xception_engine_trial_images_per_second",
            "Each engine's speed in the load-time trial that chose the serving engine",
            labels=[*labels, "engine"],
        )
        for (name, version), entry in sorted(self.repository.versions.items()):
            state.add_metric([name, version, entry.state], 1)
            if entry.inference is None:
                continue
            batcher = entry.inference.batcher
            choice = entry.inference.runtime.choice
            engine.add_metric([name, version, choice.engine, choice.how], 1)
            for measured, rate in choice.images_per_s.items():
                trial.add_metric([name, version, measured], rate)
            counts = {**batcher.stats.counters(), "queue_depth": batcher.queue_depth}
            for key, family in families.items():
                family.add_metric([name, version], counts[key])
            for reason, key in REJECTION_REASONS.items():
                rejected.add_metric([name, version, reason], counts[key])
            buckets, total = _histogram(batcher.stats.batch_sizes, batcher.stats.batches)
            batch_size.add_metric([name, version], buckets, total)
        yield state
        yield from families.values()
        yield rejected
        yield batch_size
        yield engine
        yield trial


def _histogram(
    sizes: collections.Counter[int], batches: int
) -> tuple[list[tuple[str, float]], int]:
    """Cumulative buckets of batch sizes, and the images they held."""
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound in BATCH_BUCKETS:
        cumulative += sum(n for size, n in sizes.items() if _bucket(size) == bound)
        buckets.append((str(bound), cumulative))
    buckets.append(("+Inf", batches))
    return buckets, sum(size * n for size, n in sizes.items())


def _bucket(size: int) -> int | None:
    return next((bound for bound in BATCH_BUCKETS if size <= bound), None)


class HttpMetrics:
    """Request count and latency by endpoint (route template), status, and the model version
    that served the request (empty for requests no model served)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "xception_http_requests",
            "HTTP requests",
            ["endpoint", "method", "status", "model", "version"],
            registry=registry,
        )
        self.latency = Histogram(
            "xception_http_request_duration_seconds",
            "HTTP request latency",
            ["endpoint", "method", "model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class MetricsMiddleware:
    """Pure ASGI middleware (streaming-safe) that records every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            model, version = _served_by(scope)
            self.metrics.requests.labels(endpoint, method, str(status), model, version).inc()
            self.metrics.latency.labels(endpoint, method, model, version).observe(
                time.perf_counter() - started
            )


def _served_by(scope: Scope) -> tuple[str, str]:
    """(model, version) the gate routed the request to; empty when none."""
    passage = passage_of(scope)
    served = passage.served if passage is not None else None
    return served if served is not None else ("", "")
