"""The HTTP server: uvicorn with :class:`~service.edge.protocol.EdgeProtocol` (the
connection limits uvicorn lacks) and a drain hook. The body's own time limit is
:class:`~service.edge.limits.BodyDeadline` (an ASGI middleware, so it also covers the
in-process test client). :class:`DrainingServer` tells the app when SIGTERM's drain starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import uvicorn

from service.core.drain import DrainSignal
from service.edge.limits import ConnectionLimits
from service.edge.protocol import EdgeProtocol


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
        # No route speaks WebSocket: an upgrade would take the connection out of
        # EdgeProtocol's timers and limits (EdgeProtocol answers it as plain HTTP).
        ws="none",
    )
    DrainingServer(config, app.state.drain).run()
