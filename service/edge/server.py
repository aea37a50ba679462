"""The HTTP server: uvicorn with the connection-level limits it lacks, and a drain hook.

uvicorn times out idle keep-alive connections, but not a request whose headers trickle in
at 1 byte/s, and it has no limit on header size with its default parser (httptools): a
64 MB header was accepted. :class:`EdgeProtocol` adds both, answering in the error
envelope; the body's own time limit is :class:`~service.edge.limits.BodyDeadline` (an ASGI
middleware, so it also covers the in-process test client). Past ``max_connections``,
uvicorn's ``limit_concurrency`` refuses requests; we only replace its text/plain 503 by
the envelope. :class:`DrainingServer` tells the app when SIGTERM's drain starts.

:class:`EdgeProtocol` builds on uvicorn internals (the httptools protocol class and its
private hooks), which may change in any release: ``pyproject.toml`` admits only the uvicorn
minor version CI tests, and :func:`check_uvicorn` refuses to start, in one line, on another.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service import errors
from service.core.drain import DrainSignal
from service.edge.envelope import envelope_bytes, error_response
from service.edge.limits import ConnectionLimits
from service.errors import ErrorCode, ServiceError

ASGIApp = Any  # uvicorn's own ASGI3Application type is private
# The uvicorn releases EdgeProtocol was tested with (keep in step with pyproject.toml).
TESTED_UVICORN = (0, 54)
# The methods of uvicorn's httptools protocol that EdgeProtocol overrides or calls.
UVICORN_HOOKS = (
    "connection_made", "connection_lost", "data_received", "on_message_begin",
    "on_headers_complete", "_start_asgi_task", "send_400_response",
)  # fmt: skip


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
    """uvicorn's httptools protocol with a header deadline and a header size limit."""

    header_timeout_s = 10.0
    max_header_bytes = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Counted only while the headers are still incomplete after this chunk, so a chunk
        # that ends the headers and starts the body never counts against the limit.
        if self._awaiting_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(
                errors.HEADERS_TOO_LARGE,
                f"the request line and headers exceed {self.max_header_bytes:,} bytes "
                "(XCEPTION_MAX_HEADER_KB)",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        if self._header_timer is None:  # a keep-alive connection's next request
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._disarm_header_timer()
        super().on_headers_complete()

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
        """Answer in the envelope and close: below the app, as no request exists yet."""
        if self.transport.is_closing():
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
        self.transport.close()


@dataclass(frozen=True)
class Listening:
    """Where the server listens and how loudly it logs (``XCEPTION_HOST``, ``…_PORT``,
    ``…_LOG_LEVEL``)."""

    host: str
    port: int
    log_level: str


def protocol_for(limits: ConnectionLimits) -> type[EdgeProtocol]:
    """An :class:`EdgeProtocol` subclass carrying the header limits (uvicorn builds one
    protocol object per connection from the class alone)."""
    return type(
        "ConfiguredEdgeProtocol",
        (EdgeProtocol,),
        {
            "header_timeout_s": limits.header_timeout_s,
            "max_header_bytes": limits.max_header_bytes,
        },
    )


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the app when the graceful shutdown starts."""

    def __init__(self, config: uvicorn.Config, drain: DrainSignal) -> None:
        super().__init__(config)
        self.drain = drain

    async def shutdown(self, sockets: Any = None) -> None:
        self.drain.begin()
        await super().shutdown(sockets)


def serve(app: Any, listening: Listening, limits: ConnectionLimits) -> None:
    """Run ``app`` until SIGTERM/SIGINT, then drain within ``limits.drain_timeout_s``."""
    config = uvicorn.Config(
        app,
        host=listening.host,
        port=listening.port,
        log_level=listening.log_level,
        log_config=None,  # logging is configured already (observability.tracing): request ids
        http=protocol_for(limits),
        # uvicorn counts the connection being refused too: +1 so that max_connections are served.
        limit_concurrency=limits.max_connections + 1,
        timeout_keep_alive=limits.keep_alive_s,
        timeout_graceful_shutdown=math.ceil(limits.drain_timeout_s),
    )
    DrainingServer(config, app.state.drain).run()
