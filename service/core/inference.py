"""One model version's inference: images → decoded arrays → batcher → rows.

The request was routed and admitted at the edge (:mod:`service.edge.gate`) before it got
here, and comes with its :class:`~service.core.context.RequestContext` (its deadline, its
admission ticket, its client-gone signal): this module does not ask again whether the
version is ready or draining. What it decides is what only the parsed body tells — how many
images (``XCEPTION_MAX_FILES``, then their room in the admission bound:
:meth:`InferenceService.accept`) — and what happens while waiting: the deadline, the client
leaving, the drain, a failed batch. Each ends in one :class:`~service.errors.ServiceError`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from opentelemetry import trace

from artifact.decode_cost import DecodeTimedOut
from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime
from service import errors
from service.core.admission import AdmissionControl
from service.core.batcher import (
    BatcherClosed,
    BatchFailed,
    DeadlineExceeded,
    DynamicBatcher,
    ImageOutputs,
    RunBatch,
    batching_for,
)
from service.core.context import RequestContext
from service.core.drain import DrainSignal
from service.core.limits import InferenceLimits
from service.errors import ServiceError

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class Upload:
    """One encoded image as a client sent it, whichever protocol it came by."""

    filename: str
    data: bytes


class InferenceService:
    """Owns the runtime, the admission bound and the batcher of one model version."""

    def __init__(
        self,
        runtime: ModelRuntime,
        limits: InferenceLimits,
        drain: DrainSignal,
        decode_pool: ThreadPoolExecutor,
        run_lock: threading.Lock | None = None,
    ) -> None:
        """``decode_pool``: shared by every version; ``run_lock``: held while the model runs,
        so versions sharing the cores take turns (default: none)."""
        self.runtime = runtime
        self.limits = limits
        self.card = runtime.card
        images, batching = limits.images, limits.batching
        self.preprocess = Preprocessor.for_card(
            runtime.card, images.max_pixels, images.max_aspect_ratio, images.image_formats
        )
        self.max_batch_size, self.max_batch_delay_ms = batching_for(
            runtime.provider, batching.max_batch_size, batching.max_batch_delay_ms
        )
        self.batcher = DynamicBatcher(
            runtime.run if run_lock is None else _taking_turns(runtime.run, run_lock),
            max_batch_size=self.max_batch_size,
            max_delay_s=self.max_batch_delay_ms / 1000.0,
        )
        self.admission = AdmissionControl(
            self.batcher,
            max_queue=limits.admission.max_queue,
            max_wait_s=limits.admission.max_queue_wait_s,
        )
        self.drain = drain
        self._decode_pool = decode_pool
        self.warmup_seconds: dict[int, float] = {}
        self._warmup: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start batching, and warm up in the background (the version is ready after it)."""
        self.batcher.start()
        self._warmup = asyncio.get_running_loop().create_task(self._warm_up(), name="warm-up")

    async def warmed_up(self) -> None:
        """Returns once warm-up is done; raises what warm-up raised."""
        assert self._warmup is not None, "start() first"
        await asyncio.shield(self._warmup)

    async def _warm_up(self) -> None:
        sizes = self.runtime.warm_up_sizes(self.max_batch_size)
        self.warmup_seconds = await asyncio.to_thread(self.runtime.warm_up, sizes)
        # Admission estimates waiting time before the first real batch has been timed.
        largest = max(self.warmup_seconds)
        self.batcher.stats.seconds_per_image = self.warmup_seconds[largest] / largest
        logger.info(
            "%s/%s: warm-up done (batch sizes %s: %s); ready", self.card.name, self.card.version,
            sizes, ", ".join(f"{s:.2f}s" for s in self.warmup_seconds.values()),
        )  # fmt: skip

    async def close(self, timeout_s: float) -> None:
        """Take no new work, run what is queued within ``timeout_s``, then stop."""
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
        await self.batcher.close(timeout_s=timeout_s)

    def accept(self, count: int, context: RequestContext) -> None:
        """What the body tells, before any of its images is fetched or decoded: 413 past
        ``XCEPTION_MAX_FILES``, 503 when ``count`` images do not fit the admission bound.
        Claimed once per request: a protocol that fetches its images (embeddings) calls it
        before fetching, and :meth:`infer` then finds the claim made."""
        ticket = context.ticket
        assert ticket is not None, "an inference request the gate admitted"
        if ticket.claimed and ticket.images == count:
            return
        self.limits.admission.check_files(count)
        try:
            ticket.claim(count)
        except ServiceError as refusal:
            context.retry_after_s = refusal.retry_after_s
            raise

    def deadline(self, context: RequestContext) -> float:
        """The request's one deadline (fixed by the first stage that asks)."""
        return context.deadline(self.limits.admission.request_timeout_s)

    async def infer(self, uploads: list[Upload], context: RequestContext) -> list[ImageOutputs]:
        """ImageOutputs (probabilities, features) for each upload, in upload order.

        ``context``: the request's admission ticket (released once its images are queued),
        its client-gone signal (its queued images are then skipped) and its deadline, which
        decoding counts against."""
        self.accept(len(uploads), context)
        try:
            with tracer.start_as_current_span("decode", attributes={"images": len(uploads)}):
                images = await self._decode(uploads, self.deadline(context), context)
        except BaseException:
            context.release()  # answered before queueing: its room goes back now
            raise
        return await self._queue(images, context)

    async def infer_pixels(
        self, images: list[np.ndarray], context: RequestContext
    ) -> list[ImageOutputs]:
        """ImageOutputs for images already at the model's input size (uint8 [H, W, 3] each)."""
        self.accept(len(images), context)
        return await self._queue(images, context)

    async def _decode(
        self, uploads: list[Upload], deadline: float, context: RequestContext
    ) -> list[np.ndarray]:
        """Decode in the shared pool, answering by the deadline whatever the decodes do: a
        decode still running then stops at its next block (``abandoned``), as do the other
        images of a request that one bad image has already failed."""
        loop = asyncio.get_running_loop()
        # The decode threads read time.monotonic(), which need not be the loop's clock.
        until = time.monotonic() + (deadline - loop.time())
        abandoned = threading.Event()
        decodes = asyncio.gather(
            *(
                loop.run_in_executor(
                    self._decode_pool, self.preprocess, u.data, u.filename, until, abandoned
                )
                for u in uploads
            )
        )
        decodes.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            await self._settle(decodes, deadline, context)
            return list(decodes.result())
        except DecodeTimedOut as exc:
            raise _timed_out(self._timeout_s(context)) from exc
        finally:
            abandoned.set()

    async def _queue(self, images: list[np.ndarray], context: RequestContext) -> list[ImageOutputs]:
        deadline = self.deadline(context)
        try:
            futures = self.batcher.submit(images, deadline)
        except BatcherClosed as exc:
            raise _shutting_down(str(exc)) from exc
        finally:
            context.release()  # queued (they count in the queue now) or refused
        return await self._await_rows(futures, deadline, context)

    async def _await_rows(
        self,
        futures: list[asyncio.Future[ImageOutputs]],
        deadline: float,
        context: RequestContext,
    ) -> list[ImageOutputs]:
        rows = asyncio.gather(*futures)
        # Its outcome is read even when nobody waits for it any more (cancelled images):
        # otherwise asyncio logs "exception was never retrieved" for each such request.
        rows.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            await self._settle(rows, deadline, context)
            return list(rows.result())
        except ServiceError:
            for future in futures:
                future.cancel()  # queued images are skipped by the batcher
            raise
        except DeadlineExceeded as exc:
            raise _timed_out(self._timeout_s(context)) from exc
        except BatchFailed as exc:
            raise ServiceError(
                errors.INFERENCE_FAILED, f"inference failed for this batch: {exc}"
            ) from exc
        except BatcherClosed as exc:
            raise _shutting_down(str(exc)) from exc
        finally:
            if not rows.done():
                rows.cancel()

    async def _settle(
        self, work: asyncio.Future[Any], deadline: float, context: RequestContext
    ) -> None:
        """Returns once ``work`` is done; raises the answer when the client leaves first
        (499), or the deadline passes (504) — moved into the drain time (503) by a drain
        that starts meanwhile. The one place a request's waiting ends."""
        loop = asyncio.get_running_loop()
        gone = asyncio.ensure_future(context.gone())
        drain = loop.create_task(self.drain.event.wait())
        waiting: set[asyncio.Future[Any]] = {work, gone, drain}
        try:
            while True:
                until = min(deadline, self.drain.deadline)
                await asyncio.wait(
                    waiting, timeout=until - loop.time(), return_when=asyncio.FIRST_COMPLETED
                )
                if work.done() or gone.done() or loop.time() >= until:
                    break
                waiting.discard(drain)
            if work.done():
                return
            if gone.done():
                raise ServiceError(
                    errors.CLIENT_CLOSED_REQUEST,
                    "the client disconnected before its result was ready",
                )
            if self.drain.draining and self.drain.deadline < deadline:
                raise _shutting_down(
                    "the server is shutting down and could not finish this request within "
                    "its drain time (XCEPTION_DRAIN_TIMEOUT_S)"
                )
            raise _timed_out(self._timeout_s(context))
        finally:
            gone.cancel()
            drain.cancel()

    def _timeout_s(self, context: RequestContext) -> float:
        return context.timeout_s or self.limits.admission.request_timeout_s


def _timed_out(timeout_s: float) -> ServiceError:
    return ServiceError(
        errors.TIMEOUT,
        f"no result within {timeout_s:g}s (XCEPTION_REQUEST_TIMEOUT_S or the request's own "
        "timeout); the service is busy, retry later",
    )


def _shutting_down(why: str) -> ServiceError:
    return ServiceError(errors.SHUTTING_DOWN, f"{why}; retry on another replica")


def _taking_turns(run: RunBatch, lock: threading.Lock) -> RunBatch:
    """``run`` holding ``lock``: each run already uses every core, so two models running at
    once would only time-slice them (and evict each other's caches)."""

    def run_exclusive(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with lock:
            return run(images)

    return run_exclusive
