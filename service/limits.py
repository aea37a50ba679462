"""Request-body size limit, enforced before multipart parsing spools anything to disk."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response


class BodySizeLimit:
    """413 for bodies over ``max_bytes``: at once from Content-Length, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._reject(scope, receive, send, declared.decode("latin-1"))
                return
            await self.app(scope, receive, send)
            return
        # Chunked upload: buffer up to the limit (bounded memory), then replay to the app,
        # so the rejection is a clean 413 rather than a parser error half-way through.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reject(scope, receive, send, f"more than {size}")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        limit_mb = self.max_bytes / (1024 * 1024)
        response = error_response(
            413,
            "upload_too_large",
            f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes "
            f"({limit_mb:g} MB, XCEPTION_MAX_UPLOAD_MB); send fewer or smaller files",
        )
        await response(scope, receive, send)
