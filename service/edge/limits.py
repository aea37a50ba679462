"""Limits on receiving a request body: its size, the time it may take, and the drain.

The size is enforced before multipart parsing spools anything to disk; the time, so that a
client trickling its upload at 1 byte/s cannot hold a connection (and a drain) forever. Both
run after the gate (:mod:`service.edge.gate`), which refuses what it can from the headers.
"""

from __future__ import annotations

import asyncio
from asyncio import FIRST_COMPLETED
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors
from service.core.drain import DrainSignal
from service.edge.envelope import error_response
from service.errors import ServiceError
from service.parsing import MAX_DIGITS, Unparseable, count

# What a Content-Length that is no count reads as: larger than any limit.
UNREADABLE_LENGTH = 10**MAX_DIGITS


@dataclass(frozen=True)
class BodyLimits:
    """A request body's size and time (``XCEPTION_MAX_UPLOAD_MB``, ``…_BODY_TIMEOUT_S``)."""

    max_upload_mb: float
    body_timeout_s: float

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass(frozen=True)
class ConnectionLimits:
    """A connection's headers, count, idle time and drain (the server applies them)."""

    max_header_kb: int
    header_timeout_s: float
    max_connections: int
    keep_alive_s: int
    drain_timeout_s: float

    @property
    def max_header_bytes(self) -> int:
        return self.max_header_kb * 1024


def content_length(scope: Scope) -> int | None:
    """The request's Content-Length (None: absent). One that is not plain ASCII digits, or
    absurdly long, reads as :data:`UNREADABLE_LENGTH`."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return count(value)
            except Unparseable:
                return UNREADABLE_LENGTH
    return None


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
        length = content_length(scope)
        if length is not None and length > self.max_bytes:
            shown = f"{length:,}" if length < UNREADABLE_LENGTH else "an unreadable number of"
            await self._too_large(shown, scope["path"])(scope, receive, send)
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
        too_large = ServiceError(
            errors.UPLOAD_TOO_LARGE,
            f"request body of {size} bytes exceeds the limit of {self.max_bytes:,} bytes "
            f"({limit_mb:g} MB, XCEPTION_MAX_UPLOAD_MB); send fewer or smaller files",
        )
        return error_response(too_large, close=close, path=path)


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
        late = ServiceError(
            errors.REQUEST_TIMEOUT,
            f"the request body did not arrive within {self.timeout_s:g}s "
            "(XCEPTION_BODY_TIMEOUT_S); the connection is closed",
        )
        raise _BodyCutOff(error_response(late, close=True, path=path))

    @staticmethod
    def _shutting_down(path: str) -> Response:
        cut = ServiceError(
            errors.SHUTTING_DOWN,
            "the server is shutting down and stopped reading uploads; retry on another replica",
        )
        return error_response(cut, close=True, path=path)
