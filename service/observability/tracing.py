"""Following one request through the logs (and, when configured, through OpenTelemetry).

Every response carries ``X-Request-ID``: the client's when it sent a sane one, else a new one
(a v2 request's ``id`` replaces it). Every log line written while the request is handled —
uvicorn's access line included — carries the same id; ``XCEPTION_LOG_FORMAT=json`` writes one
JSON object per line (python-json-logger) for log collectors.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
HEADER = b"x-request-id"
# What we echo back and write into logs: short, and no characters that could forge log lines.
SANE_ID = re.compile(r"[A-Za-z0-9._:/-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def sane(value: str | None) -> str | None:
    """``value`` if it can be echoed into headers and logs as it is, else None."""
    return value if value is not None and SANE_ID.fullmatch(value) else None


def adopt_request_id(value: str | None) -> None:
    """The request named itself (a v2 request's ``id``): that id, if sane, replaces the
    header's in the response's X-Request-ID and in the log lines from here on."""
    if adopted := sane(value):
        REQUEST_ID.set(adopted)


class RequestIdMiddleware:
    """Outermost: picks the request's id before anything else can log about it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(HEADER, b"").decode("latin-1")
        REQUEST_ID.set(sane(sent) or uuid.uuid4().hex)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                headers.append((HEADER, REQUEST_ID.get().encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def configure_logging(level: str, fmt: Literal["text", "json"]) -> None:
    """One stderr handler on the root logger, for our loggers and uvicorn's alike."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []  # through the root handler, with the id
        logging.getLogger(name).propagate = True
