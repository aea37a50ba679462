"""Request-level inference: uploads → decoded arrays → batcher → rows, with every guard.

The routers call :meth:`InferenceService.infer` and format the rows; everything that
can go wrong on the way (not ready, too many files, bad image, full queue, deadline,
client gone, shutdown) is decided here and raised as a ServiceError.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from opentelemetry import trace

from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime
from service.admission import AdmissionControl, Refusal, Ticket
from service.batcher import (
    BatcherClosed,
    BatchFailed,
    DeadlineExceeded,
    DynamicBatcher,
    QueueFull,
    Rows,
    RunBatch,
    batching_for,
)
from service.config import Settings
from service.errors import (
    ClientClosedRequest,
    InferenceFailed,
    NotReady,
    Overloaded,
    RequestTimeout,
    ServiceError,
    ShuttingDown,
    TooManyFiles,
)
from service.limits import DrainSignal
from service.protocols.uploads import Upload

logger = logging.getLogger("service.inference")
tracer = trace.get_tracer("service.inference")

NOT_READY_RETRY_AFTER_S = 5
NOT_READY_MESSAGE = "the model is still loading/warming up; retry shortly"
# Returns once the client has disconnected (awaited beside the result, never alone).
ClientGone = Callable[[], Awaitable[None]]


class InferenceService:
    """Owns the runtime, the decode pool and the batcher for one model."""

    def __init__(
        self,
        runtime: ModelRuntime,
        settings: Settings,
        drain: DrainSignal | None = None,
        decode_pool: ThreadPoolExecutor | None = None,
        run_lock: threading.Lock | None = None,
    ) -> None:
        """``decode_pool``: shared by every model (default: one of its own); ``run_lock``:
        held while the model runs, so models sharing the cores take turns (default: none)."""
        self.runtime = runtime
        self.settings = settings
        self.card = runtime.card
        self.preprocess = Preprocessor.for_card(
            runtime.card, settings.max_pixels, settings.max_aspect_ratio
        )
        self.max_batch_size, self.max_batch_delay_ms = batching_for(
            runtime.provider, settings.max_batch_size, settings.max_batch_delay_ms
        )
        self.batcher = DynamicBatcher(
            runtime.run if run_lock is None else _taking_turns(runtime.run, run_lock),
            max_batch_size=self.max_batch_size,
            max_delay_s=self.max_batch_delay_ms / 1000.0,
            max_queue=settings.max_queue,
        )
        self.admission = AdmissionControl(
            self.batcher, max_queue=settings.max_queue, max_wait_s=settings.max_queue_wait_s
        )
        self.drain = drain or DrainSignal(settings.drain_timeout_s)
        self._owns_pool = decode_pool is None
        self._decode_pool = decode_pool or ThreadPoolExecutor(
            max_workers=settings.decode_workers, thread_name_prefix="decode"
        )
        self.ready = False
        self.warmup_seconds: dict[int, float] = {}
        self._warmup: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start batching, and warm up in the background (``/readyz`` waits for it)."""
        self.batcher.start()
        self._warmup = asyncio.get_running_loop().create_task(self._warm_up(), name="warm-up")

    async def warmed_up(self) -> None:
        """Returns once warm-up is done (the service is ready); raises what warm-up raised."""
        assert self._warmup is not None, "start() first"
        await asyncio.shield(self._warmup)

    async def _warm_up(self) -> None:
        sizes = self.runtime.warm_up_sizes(self.max_batch_size)
        self.warmup_seconds = await asyncio.to_thread(self.runtime.warm_up, sizes)
        # Admission estimates waiting time before the first real batch has been timed.
        largest = max(self.warmup_seconds)
        self.batcher.stats.seconds_per_image = self.warmup_seconds[largest] / largest
        self.ready = True
        logger.info(
            "%s/%s: warm-up done (batch sizes %s: %s); ready", self.card.name, self.card.version,
            sizes, ", ".join(f"{s:.2f}s" for s in self.warmup_seconds.values()),
        )  # fmt: skip

    async def close(self, timeout_s: float) -> None:
        """Take no new work, run what is queued within ``timeout_s``, then release threads."""
        self.ready = False
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
        await self.batcher.close(timeout_s=timeout_s)
        if self._owns_pool:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)

    def admit(self) -> Ticket | Refusal:
        """Whether a new request can be served in time, decided before its body is read."""
        if self.drain.draining:
            return Refusal(
                "shutting_down", "the server is shutting down; retry on another replica", 1
            )
        if not self.ready:
            return Refusal("not_ready", NOT_READY_MESSAGE, NOT_READY_RETRY_AFTER_S)
        return self.admission.admit()

    async def infer(
        self,
        uploads: list[Upload],
        client_gone: ClientGone,
        ticket: Ticket | None = None,
        timeout_s: float | None = None,
    ) -> list[Rows]:
        """Rows (probabilities, features) for each upload, in upload order.

        ``client_gone``: returns when the client disconnects (its queued images are then
        skipped); ``ticket``: the request's admission, released once its images are queued;
        ``timeout_s``: a tighter deadline than XCEPTION_REQUEST_TIMEOUT_S, if the client set one.
        """
        timeout_s = self._accept(len(uploads), timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with tracer.start_as_current_span("decode", attributes={"images": len(uploads)}):
            images = await asyncio.gather(
                *(
                    loop.run_in_executor(self._decode_pool, self.preprocess, u.data, u.filename)
                    for u in uploads
                )
            )
        return await self._queue(images, deadline, timeout_s, client_gone, ticket)

    async def infer_pixels(
        self,
        images: list[np.ndarray],
        client_gone: ClientGone,
        ticket: Ticket | None = None,
        timeout_s: float | None = None,
    ) -> list[Rows]:
        """Rows for images already at the model's input size (uint8 [H, W, 3] each)."""
        timeout_s = self._accept(len(images), timeout_s)
        deadline = asyncio.get_running_loop().time() + timeout_s
        return await self._queue(images, deadline, timeout_s, client_gone, ticket)

    def admit_now(self) -> Ticket:
        """:meth:`admit` for a request whose model was only known from its body: the ticket,
        or the refusal raised as its error."""
        decision = self.admit()
        if isinstance(decision, Refusal):
            errors = {"not_ready": NotReady, "shutting_down": ShuttingDown}
            raise errors.get(decision.code, Overloaded)(
                decision.message, retry_after_s=decision.retry_after_s
            )
        return decision

    def require_ready(self) -> None:
        """503 ``not_ready`` until the model is warm (and once the drain has begun)."""
        if not self.ready:
            raise NotReady(NOT_READY_MESSAGE, retry_after_s=NOT_READY_RETRY_AFTER_S)

    def check_count(self, count: int) -> None:
        """413 past ``XCEPTION_MAX_FILES`` images in one request."""
        if count > self.settings.max_files:
            raise TooManyFiles(
                f"{count} images in one request; the limit is {self.settings.max_files} "
                "(XCEPTION_MAX_FILES)"
            )

    def _accept(self, count: int, timeout_s: float | None) -> float:
        """Refuse what cannot be served before spending any decode time; the timeout to use."""
        self.require_ready()
        self.check_count(count)
        self._check_capacity(count)
        limit = self.settings.request_timeout_s
        return limit if timeout_s is None else min(limit, timeout_s)

    async def _queue(
        self,
        images: list[np.ndarray],
        deadline: float,
        timeout_s: float,
        client_gone: ClientGone,
        ticket: Ticket | None,
    ) -> list[Rows]:
        try:
            futures = self.batcher.submit(images, deadline)
        except QueueFull as exc:
            raise self._overloaded(str(exc)) from exc
        except BatcherClosed as exc:
            raise ShuttingDown(f"{exc}; retry on another replica", retry_after_s=1) from exc
        finally:
            # Queued (they count in the queue now) or refused: either way no longer arriving.
            if ticket is not None:
                ticket.release()
        return await self._await_rows(futures, deadline, timeout_s, client_gone)

    async def _await_rows(
        self,
        futures: list[asyncio.Future[Rows]],
        deadline: float,
        timeout_s: float,
        client_gone: ClientGone,
    ) -> list[Rows]:
        loop = asyncio.get_running_loop()
        rows = asyncio.gather(*futures)
        gone = asyncio.ensure_future(client_gone())
        drain = loop.create_task(self.drain.event.wait())
        waiting: set[asyncio.Future[Any]] = {rows, gone, drain}
        try:
            while True:
                # A drain that starts while we wait moves the deadline into the drain time.
                until = min(deadline, self.drain.deadline)
                await asyncio.wait(
                    waiting, timeout=until - loop.time(), return_when=asyncio.FIRST_COMPLETED
                )
                if rows.done() or gone.done() or loop.time() >= until:
                    break
                waiting.discard(drain)
            if rows.done():
                return list(rows.result())
            for future in futures:
                future.cancel()  # queued images are skipped by the batcher
            if gone.done():
                raise ClientClosedRequest("the client disconnected before its result was ready")
            if self.drain.draining and self.drain.deadline < deadline:
                raise ShuttingDown(
                    "the server is shutting down and could not finish this request within "
                    "its drain time (XCEPTION_DRAIN_TIMEOUT_S); retry on another replica",
                    retry_after_s=1,
                )
            raise RequestTimeout(
                f"no result within {timeout_s:g}s (XCEPTION_REQUEST_TIMEOUT_S or the request's "
                "own timeout); the service is busy, retry later"
            )
        except DeadlineExceeded as exc:
            raise RequestTimeout(f"{exc} ({timeout_s:g}s)") from exc
        except BatchFailed as exc:
            raise InferenceFailed(f"inference failed for this batch: {exc}") from exc
        except BatcherClosed as exc:
            raise ShuttingDown(str(exc), retry_after_s=1) from exc
        finally:
            gone.cancel()
            drain.cancel()
            if not rows.done():
                rows.cancel()

    def _check_capacity(self, count: int) -> None:
        if not self.batcher.has_room(count):
            self.batcher.stats.rejected_queue_full += 1
            raise self._overloaded(
                f"{self.batcher.queue_depth} images queued (limit {self.settings.max_queue})"
            )

    def _overloaded(self, detail: str) -> ServiceError:
        return Overloaded(
            f"the queue is full ({detail}, XCEPTION_MAX_QUEUE); retry after the Retry-After "
            "delay or add replicas",
            retry_after_s=self.admission.retry_after_s(),
        )


def _taking_turns(run: RunBatch, lock: threading.Lock) -> RunBatch:
    """``run`` holding ``lock``: each run already uses every core, so two models running at
    once would only time-slice them (and evict each other's caches)."""

    def run_exclusive(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with lock:
            return run(images)

    return run_exclusive
