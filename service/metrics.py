"""Prometheus metrics: HTTP traffic by endpoint and status, and the batcher's counters.

Each app gets its own registry (several apps can live in one process, as in tests).
The batcher's counters have one source of truth, :class:`~service.batcher.BatcherStats`;
a custom collector exports them at scrape time instead of mirroring every increment.
"""

from __future__ import annotations

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

from service.batcher import DynamicBatcher

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# xception_rejected{reason=...} ← the BatcherStats counter it exports.
REJECTION_REASONS = {
    "queue_full": "rejected_queue_full",
    "queue_wait": "rejected_queue_wait",
    "deadline": "dropped_expired",
    "cancelled": "dropped_cancelled",
}
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class BatcherCollector(Collector):
    """Exports a batcher's stats and queue depth at scrape time."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self.batcher = batcher

    def collect(self) -> Iterator[Metric]:
        stats = self.batcher.stats
        counts = stats.counters()
        yield GaugeMetricFamily(
            "xception_queue_depth", "Images waiting for inference", value=self.batcher.queue_depth
        )
        yield CounterMetricFamily(
            "xception_images", "Images run through the model", counts["images"]
        )
        yield CounterMetricFamily("xception_batches", "Batches run", counts["batches"])
        yield CounterMetricFamily(
            "xception_failed_batches", "Batches whose inference raised", counts["failed_batches"]
        )
        rejected = CounterMetricFamily(
            "xception_rejected", "Work refused or dropped before inference", labels=["reason"]
        )
        for reason, key in REJECTION_REASONS.items():
            rejected.add_metric([reason], counts[key])
        yield rejected
        buckets, cumulative = [], 0
        for bound in BATCH_BUCKETS:
            cumulative += sum(n for size, n in stats.batch_sizes.items() if _bucket(size) == bound)
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", stats.batches))
        total_images = sum(size * n for size, n in stats.batch_sizes.items())
        yield HistogramMetricFamily(
            "xception_batch_size", "Images per batch", buckets=buckets, sum_value=total_images
        )
        yield CounterMetricFamily(
            "xception_inference_seconds", "Time spent in the model", counts["inference_seconds"]
        )


def _bucket(size: int) -> int | None:
    return next((bound for bound in BATCH_BUCKETS if size <= bound), None)


class HttpMetrics:
    """Request count and latency by endpoint (route template) and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "xception_http_requests",
            "HTTP requests",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "xception_http_request_duration_seconds",
            "HTTP request latency",
            ["endpoint", "method"],
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
            self.metrics.requests.labels(endpoint, method, str(status)).inc()
            self.metrics.latency.labels(endpoint, method).observe(time.perf_counter() - started)
