"""Limits on receiving a request body: its size, the time it may take, and the drain.

The size is enforced before multipart parsing spools anything to disk; the time, so that a
client trickling its upload at 1 byte/s cannot hold a connection (and a drain) forever.
"""

from __future__ import annotations

import asyncio
import math
from asyncio import FIRST_COMPLETED

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response


def carries_body(scope: Scope) -> bool:
    """An HTTP request whose method sends a body: what the body limits apply to."""
    return scope["type"] == "http" and scope.get("method") not in ("GET", "HEAD", "OPTIONS")


class _BodyCutOff(BaseException):
    # BaseException, like CancelledError: it must pass through the app's exception handlers
    # (which would turn an Exception into a 500) to the middleware that raised it.
    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


async def _answer_cut_offs(
    app: ASGIApp, scope: Scope, wrapped: Receive, receive: Receive, send: Send
) -> None:
    """Run ``app`` reading through ``wrapped``; a cut-off raised there is answered with its
    response (unless the app already started one) instead of reaching the app's handlers."""
    response_started = False

    async def tracking_send(message: Message) -> None:
        nonlocal response_started
        response_started = response_started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, wrapped, tracking_send)
    except _BodyCutOff as cut:
        if not response_started:
            await cut.response(scope, receive, send)


class BodySizeLimit:
    """413 for bodies over ``max_bytes``: at once from Content-Length, else counted as the
    chunks arrive (Starlette's streaming style): nothing past the limit is read or buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not carries_body(scope):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or []:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                answer = self._too_large(value.decode("latin-1"), scope["path"])
                await answer(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # The rest of the body is never read: the connection is closed.
                    too_large = self._too_large(f"more than {received:,}", scope["path"], True)
                    raise _BodyCutOff(too_large)
            return message

        await _answer_cut_offs(self.app, scope, counting_receive, receive, send)

    def _too_large(self, size: str, path: str, close: bool = False) -> Response:
        limit_mb = self.max_bytes / (1024 * 1024)
        return error_response(
            413,
            "upload_too_large",
            f"request body of {size} bytes exceeds the limit of {self.max_bytes:,} bytes "
            f"({limit_mb:g} MB, XCEPTION_MAX_UPLOAD_MB); send fewer or smaller files",
            close=close,
            path=path,
        )


class DrainSignal:
    """Set when the server starts its graceful shutdown (SIGTERM), before connections drain.

    Uploads still arriving are cut off at once, and requests waiting for the model get a
    deadline that ends inside the drain time, so every client gets an answer in the envelope.
    """

    def __init__(self, drain_timeout_s: float) -> None:
        self.drain_timeout_s = drain_timeout_s
        self.event = asyncio.Event()
        self.deadline = math.inf  # loop.time() by which every request must have answered

    def begin(self) -> None:
        """Called once by the server when shutdown starts."""
        if not self.event.is_set():
            # Keep a margin for the answer itself to be written before the server gives up.
            self.deadline = asyncio.get_running_loop().time() + self.drain_timeout_s - 1.0
            self.event.set()

    @property
    def draining(self) -> bool:
        return self.event.is_set()


class BodyDeadline:
    """408 when a request's body has not arrived within ``timeout_s`` of its headers; 503 for
    a body still arriving when the drain starts. Both close the connection."""

    def __init__(self, app: ASGIApp, timeout_s: float, drain: DrainSignal) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not carries_body(scope):
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            message = await self._receive_before(receive, deadline, scope["path"])
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await _answer_cut_offs(self.app, scope, timed_receive, receive, send)

    async def _receive_before(self, receive: Receive, deadline: float, path: str) -> Message:
        if self.drain.draining:
            raise _BodyCutOff(self._shutting_down(path))
        loop = asyncio.get_running_loop()
        arrival = asyncio.ensure_future(receive())
        drain = asyncio.ensure_future(self.drain.event.wait())
        try:
            await asyncio.wait(
                {arrival, drain}, timeout=deadline - loop.time(), return_when=FIRST_COMPLETED
            )
        finally:
            drain.cancel()
            if not arrival.done():
                arrival.cancel()
        if arrival.done() and not arrival.cancelled():
            return arrival.result()
        if self.drain.draining:
            raise _BodyCutOff(self._shutting_down(path))
        raise _BodyCutOff(
            error_response(
                408,
                "request_timeout",
                f"the request body did not arrive within {self.timeout_s:g}s "
                "(XCEPTION_BODY_TIMEOUT_S); the connection is closed",
                close=True,
                path=path,
            )
        )

    @staticmethod
    def _shutting_down(path: str) -> Response:
        return error_response(
            503,
            "shutting_down",
            "the server is shutting down and stopped reading uploads; retry on another replica",
            retry_after_s=1,
            close=True,
            path=path,
        )
