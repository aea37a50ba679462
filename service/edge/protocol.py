"""The connection-level limits uvicorn lacks, as a subclass of its httptools protocol.

uvicorn times out idle keep-alive connections, but not a request whose headers trickle in
at 1 byte/s, and it has no limit on header size with its default parser (httptools): a
64 MB header was accepted. :class:`EdgeProtocol` adds both, and bounds what follows the
headers too (chunk framing and trailers, which httptools buffers), answering in the error
envelope. It answers an ``Upgrade`` request as plain HTTP/1.1: an upgraded connection
would leave every one of these limits. Past ``max_connections``, uvicorn's
``limit_concurrency`` refuses requests; we only replace its text/plain 503 by the envelope.

:class:`EdgeProtocol` builds on uvicorn internals (the httptools protocol class and its
private hooks), which may change in any release: ``pyproject.toml`` admits only the uvicorn
minor version CI tests, and :func:`check_uvicorn` refuses to start, in one line, on another.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service import errors
from service.edge.envelope import envelope_bytes, error_response
from service.errors import ErrorCode, ServiceError

ASGIApp = Any  # uvicorn's own ASGI3Application type is private
# The uvicorn releases EdgeProtocol was tested with (keep in step with pyproject.toml).
TESTED_UVICORN = (0, 54)
# The methods of uvicorn's httptools protocol that EdgeProtocol overrides or calls.
UVICORN_HOOKS = (
    "connection_made", "connection_lost", "data_received", "on_message_begin", "on_header",
    "on_url", "on_headers_complete", "on_body", "on_message_complete", "_start_asgi_task",
    "send_400_response", "_unset_keepalive_if_required",
)  # fmt: skip
# Chunk-size lines and trailers a body may carry beyond the header limit: a quarter of its
# data bytes (8 KB chunks cost ~0.1 %; 1-byte chunks, 500 %, are refused past the limit).
FRAMING_SHARE = 4
# After a refusal, what the client still sends is read and dropped for this long before the
# connection closes: closing with unread bytes would send an RST that can destroy the answer
# before the client reads it (a lingering close, as nginx's).
LINGER_S = 2.0
# What frames a body: all a fresh parser needs to read one after an ignored upgrade.
FRAMING_HEADERS = (b"content-length", b"transfer-encoding")


def check_uvicorn() -> str | None:
    """None when the installed uvicorn is one :class:`EdgeProtocol` was tested with; else
    the one line that says which version to install."""
    installed = tuple(int(part) for part in uvicorn.__version__.split(".")[:2] if part.isdigit())
    missing = [hook for hook in UVICORN_HOOKS if not hasattr(HttpToolsProtocol, hook)]
    if installed == TESTED_UVICORN and not missing:
        return None
    tested = ".".join(map(str, TESTED_UVICORN))
    gone = f" ({', '.join(missing)} missing)" if missing else ""
    return (
        f"uvicorn {uvicorn.__version__} is installed, but the server's connection limits build "
        f"on uvicorn {tested}.x internals{gone}: pip install 'uvicorn[standard]=={tested}.*' "
        "(or install with requirements/runtime.txt)"
    )


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    refusal = ServiceError(
        errors.TOO_MANY_CONNECTIONS,
        "the server has as many open connections as it accepts (XCEPTION_MAX_CONNECTIONS); "
        "retry after the Retry-After delay or on another replica",
    )
    await error_response(refusal, close=True)(scope, receive, send)


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a header size limit that
    also bounds what follows the headers (chunk framing, trailers), and no protocol upgrade.
    """

    header_timeout_s = 10.0
    max_header_bytes = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._header_bytes = 0
        # Inside one message's body: its data bytes and the bytes around them (framing).
        self._in_body = False
        self._body_bytes = 0
        self._framing_bytes = 0
        self._messages = 0
        self._resuming_body = False  # reading an upgrade request's body with a fresh parser
        self._lingering = False  # refused: the answer is sent, what arrives is dropped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, but for the upgrade: it drops the bytes after an upgrade request
        # (a body, a pipelined request) and leaves the connection unanswered.
        if self.parser is None or self._lingering:  # closed or refused: nothing more is read
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        in_body, body_before, messages = self._in_body, self._body_bytes, self._messages
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade as upgrade:
            self._continue_without_upgrade(data[upgrade.args[0] :])
            return
        # Counted only while the headers are still incomplete after this chunk, so a chunk
        # that ends the headers and starts the body never counts against the limit.
        if self._awaiting_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(
                errors.HEADERS_TOO_LARGE,
                f"the request line and headers exceed {self.max_header_bytes:,} bytes "
                "(XCEPTION_MAX_HEADER_KB)",
            )
        elif in_body and self._messages == messages:
            # A chunk wholly inside one body: what is not data is chunk framing or trailers,
            # which the parser buffers (an endless trailer value, quadratically).
            self._framing_bytes += len(data) - (self._body_bytes - body_before)
            if self._framing_bytes > self.max_header_bytes + self._body_bytes // FRAMING_SHARE:
                self._refuse(
                    errors.HEADERS_TOO_LARGE,
                    f"the chunk framing and trailers exceed {self.max_header_bytes:,} bytes "
                    f"plus 1/{FRAMING_SHARE} of the body (XCEPTION_MAX_HEADER_KB)",
                )

    def _continue_without_upgrade(self, rest: bytes) -> None:
        """The parser stopped at an upgrade request (``Connection: upgrade``, e.g. curl's
        ``--http2`` over http://): no route speaks another protocol, so it is answered as
        plain HTTP/1.1 (RFC 9110 §7.8 lets a server ignore Upgrade). A fresh parser reads
        what follows: the request's body, if it has one, with its own framing, then the
        requests pipelined after it."""
        if self.transport.is_closing():
            return
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        if self._in_body:
            self._resuming_body = True  # the callbacks of this stand-in head are not a request
            framing = [n + b": " + v for n, v in self.headers if n in FRAMING_HEADERS]
            self.parser.feed_data(b"\r\n".join([b"POST / HTTP/1.1", *framing, b"", b""]))
        if rest:
            self.data_received(rest)

    def on_message_begin(self) -> None:
        if self._resuming_body:
            return
        super().on_message_begin()
        self._awaiting_headers = True
        self._messages += 1
        if self._header_timer is None:  # a keep-alive connection's next request
            self._arm_header_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailers arrive here too, after the app has the headers: uvicorn would append
        # them to the request's headers. No route reads trailers; they are counted
        # (as framing) and dropped.
        if self._awaiting_headers and not self._resuming_body:
            super().on_header(name, value)

    def on_url(self, url: bytes) -> None:
        if not self._resuming_body:
            super().on_url(url)

    def on_headers_complete(self) -> None:
        if self._resuming_body:
            self._resuming_body = False
            return
        self._awaiting_headers = False
        self._header_bytes = 0
        self._disarm_header_timer()
        self._in_body, self._body_bytes, self._framing_bytes = True, 0, 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade() and self._has_body():
            return  # the parser ends an upgrade request at its headers: its body follows
        self._in_body = False
        super().on_message_complete()

    def _has_body(self) -> bool:
        return any(
            name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
            for name, value in self.headers
        )

    def send_400_response(self, msg: str) -> None:
        # httptools refused the bytes (a control character in a header, broken framing):
        # uvicorn answers text/plain; keep every answer in the envelope.
        self._refuse(errors.HTTP_ERROR, f"not a valid HTTP/1.1 request ({msg.rstrip('.')})")

    def _start_asgi_task(self, cycle: Any, app: ASGIApp) -> None:
        # uvicorn's limit_concurrency answers text/plain; keep every answer in the envelope.
        super()._start_asgi_task(cycle, _over_capacity if app is service_unavailable else app)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and not self.transport.is_closing():
            self._refuse(
                errors.REQUEST_TIMEOUT,
                f"the request headers did not arrive within {self.header_timeout_s:g}s "
                "(XCEPTION_HEADER_TIMEOUT_S); the connection is closed",
            )

    def _refuse(self, error: ErrorCode, message: str) -> None:
        """Answer in the envelope and end the connection (:meth:`_linger`): below the app,
        as no request exists yet (or its answer has not started: the app sees a disconnect)."""
        if self.transport.is_closing() or self._lingering:
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        if answering and self.cycle.response_started:  # mid-answer: closing is all we can do
            self.transport.close()
            return
        body = envelope_bytes(error, message)
        head = [STATUS_LINE[error.status]]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self._awaiting_headers = False
        self._linger()

    def _linger(self) -> None:
        """Half-close after the answer, drop what still arrives, close after LINGER_S (or
        when the client does). The app, if it was reading a body, sees a disconnect now."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._lingering = True
        self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)
