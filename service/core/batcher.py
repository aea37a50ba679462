"""Dynamic batching: many requests' images, one ONNX Runtime call.

One asyncio consumer takes the first waiting image, then keeps taking until the batch
is full or ``max_delay_s`` has passed since it took that first one; stacks them; runs
the model in a dedicated worker thread; hands each image its rows. Every future is
resolved, even when the batch fails. How many images may wait is decided before they get
here, by admission control (:mod:`service.core.admission`), the one place that bound lives.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from opentelemetry import trace

from artifact.runtime import CPU_EP, CUDA_EP

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

RunBatch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# (max batch size, max batch delay ms) when the settings leave them unset, measured with
# bench/ (docs/performance.md). CPU: batches do not raise a CPU's img/s, so never wait for
# one: take what is queued (greedy). CUDA: batches are where a GPU's throughput comes from.
BATCHING_DEFAULTS = {CPU_EP: (4, 0.0), CUDA_EP: (32, 5.0)}


def batching_for(
    provider: str, max_batch_size: int | None, max_delay_ms: float | None
) -> tuple[int, float]:
    """The settings' batching values, with ``provider``'s defaults for the unset ones."""
    default_size, default_delay = BATCHING_DEFAULTS.get(provider, BATCHING_DEFAULTS[CPU_EP])
    return (
        default_size if max_batch_size is None else max_batch_size,
        default_delay if max_delay_ms is None else max_delay_ms,
    )


class ImageOutputs(NamedTuple):
    """One image's outputs."""

    probabilities: np.ndarray  # [C]
    features: np.ndarray  # [D]


class BatcherClosed(Exception):
    """The batcher is draining for shutdown and takes no new work."""


class DeadlineExceeded(Exception):
    """The image waited past its request's deadline and was dropped before inference."""


class BatchFailed(Exception):
    """The model raised while running the batch this image was in."""


@dataclass
class WorkItem:
    image: np.ndarray
    future: asyncio.Future[ImageOutputs]
    deadline: float  # loop.time() after which the image is not worth running
    # The submitting request's span, and when the image was queued: its "queue wait" span.
    trace_context: trace.SpanContext = trace.INVALID_SPAN_CONTEXT
    queued_ns: int = 0


@dataclass
class BatcherStats:
    """Counters since start; exported by /v1/models and /metrics."""

    images: int = 0
    batches: int = 0
    failed_batches: int = 0
    # Refused by admission (service.core.admission): too many images, or too long a wait.
    rejected_queue_full: int = 0
    rejected_queue_wait: int = 0
    dropped_expired: int = 0
    dropped_cancelled: int = 0
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)
    inference_seconds: float = 0.0
    # Recent model time per image (exponential moving average over batches): what admission
    # control and Retry-After estimate waiting times with. Seeded from the warm-up.
    seconds_per_image: float = 0.1

    def record_batch(self, size: int, seconds: float) -> None:
        """Count one successful batch of ``size`` images that took ``seconds``."""
        self.batches += 1
        self.images += size
        self.batch_sizes[size] += 1
        self.inference_seconds += seconds
        self.seconds_per_image += SMOOTHING * (seconds / size - self.seconds_per_image)

    def counters(self) -> dict[str, int | float]:
        """Every count, by name: the one export that /v1/models and /metrics both read."""
        return {
            "images": self.images,
            "batches": self.batches,
            "failed_batches": self.failed_batches,
            "rejected_queue_full": self.rejected_queue_full,
            "rejected_queue_wait": self.rejected_queue_wait,
            "dropped_expired": self.dropped_expired,
            "dropped_cancelled": self.dropped_cancelled,
            "inference_seconds": self.inference_seconds,
        }


# Weight of the newest batch in seconds_per_image: reacts within ~5 batches, not to one outlier.
SMOOTHING = 0.2


class DynamicBatcher:
    """Collects images from concurrent requests into batches for ``run_batch``."""

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_size: int,
        max_delay_s: float,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.stats = BatcherStats()
        self._queue: collections.deque[WorkItem] = collections.deque()
        self.in_flight = 0  # images in the batch the model is running now
        self._wakeup = asyncio.Event()
        self._closing = False
        self._consumer: asyncio.Task[None] | None = None
        # One thread: one batch in flight; ORT parallelises inside the call.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        # Start the thread now, from the thread that builds the batcher: threads inherit
        # their creator's scheduling priority (see service.core.priority).
        self._executor.submit(lambda: None).result()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the consumer task on the running loop."""
        self._consumer = asyncio.get_running_loop().create_task(self._consume(), name="batcher")

    def submit(
        self, images: Sequence[np.ndarray], deadline: float
    ) -> list[asyncio.Future[ImageOutputs]]:
        """Queue a request's images together (raises BatcherClosed once closing)."""
        if self._closing:
            raise BatcherClosed("the service is shutting down")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[ImageOutputs]] = []
        context, now_ns = trace.get_current_span().get_span_context(), time.time_ns()
        for image in images:
            future: asyncio.Future[ImageOutputs] = loop.create_future()
            self._queue.append(WorkItem(image, future, deadline, context, now_ns))
            futures.append(future)
        self._wakeup.set()
        return futures

    async def close(self, timeout_s: float) -> None:
        """Stop taking work, run what is queued and in flight, then stop (graceful drain)."""
        self._closing = True
        self._wakeup.set()
        if self._consumer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._consumer), timeout_s)
            except asyncio.TimeoutError:
                logger.warning("drain did not finish in %.1fs; cancelling", timeout_s)
                self._consumer.cancel()
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(BatcherClosed("the service shut down"))
        self._queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _consume(self) -> None:
        while True:
            batch = await self._collect()
            if batch is None:
                return
            if batch:
                await self._run(batch)

    async def _collect(self) -> list[WorkItem] | None:
        """Wait for a first item, then fill until full or the delay since it has passed."""
        while not self._queue:
            if self._closing:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        batch = [self._queue.popleft()]
        closes_at = loop.time() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            if self._queue:
                batch.append(self._queue.popleft())
                continue
            remaining = closes_at - loop.time()
            if remaining <= 0 or self._closing:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return self._live(batch, loop.time())

    def _live(self, batch: list[WorkItem], now: float) -> list[WorkItem]:
        """Drop items nobody waits for any more: cancelled (client gone) or past deadline."""
        live = []
        for item in batch:
            if item.future.done():
                self.stats.dropped_cancelled += 1
            elif now > item.deadline:
                self.stats.dropped_expired += 1
                item.future.set_exception(DeadlineExceeded("waited past the request deadline"))
            else:
                live.append(item)
        return live

    async def _run(self, batch: list[WorkItem]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self.in_flight = len(batch)
        traced = [item.trace_context for item in batch if item.trace_context.is_valid]
        _end_queue_waits(batch, time.time_ns())
        try:
            with tracer.start_as_current_span(
                "batch",
                links=[trace.Link(context) for context in traced],
                attributes={"batch.size": len(batch)},
            ):
                stacked = np.stack([item.image for item in batch])
                with tracer.start_as_current_span("inference"):
                    probabilities, features = await loop.run_in_executor(
                        self._executor, self._run_batch, stacked
                    )
            if len(probabilities) != len(batch) or len(features) != len(batch):
                raise RuntimeError(
                    f"model returned {len(probabilities)}/{len(features)} rows for "
                    f"{len(batch)} images"
                )
        except Exception as exc:  # every caller gets an answer, even when the batch fails
            logger.exception("batch of %d failed", len(batch))
            self.stats.failed_batches += 1
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(BatchFailed(f"{type(exc).__name__}: {exc}"))
            return
        finally:
            self.in_flight = 0
        self.stats.record_batch(len(batch), time.perf_counter() - started)
        for row, item in enumerate(batch):
            if not item.future.done():
                item.future.set_result(ImageOutputs(probabilities[row], features[row]))


def _end_queue_waits(batch: list[WorkItem], now_ns: int) -> None:
    """One "queue wait" span per traced image, in its request's trace, ending now."""
    for item in batch:
        if item.trace_context.is_valid:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(item.trace_context))
            span = tracer.start_span("queue wait", context=parent, start_time=item.queued_ns)
            span.end(end_time=now_ns)
