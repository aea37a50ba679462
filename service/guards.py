"""Refusals decided from the headers alone, before any of the body is read.

An unauthenticated client, or one the queue cannot serve in time, must not make the
server parse a 20 MB upload first: these ASGI middlewares answer from the request line
and headers, and close the connection rather than read the rest of the body.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from contextlib import nullcontext

from starlette.types import ASGIApp, Receive, Scope, Send

from service.admission import Admission, Refusal
from service.errors import error_response
from service.pages import is_page

# Open without the API key: probes, metrics scrapes, the API's own documentation, and the
# pages (service.pages): the try-it page asks for the key itself.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/v2/health/live", "/v2/health/ready"}
)


def is_public(path: str) -> bool:
    """Whether ``path`` is served without the API key."""
    return path in PUBLIC_PATHS or is_page(path)


# Requests that carry images to the model: what admission control applies to.
INFERENCE_PATHS = frozenset({"/classify", "/features", "/v1/embeddings"})
ADMISSION_STATE_KEY = "admission_ticket"


def is_inference_path(path: str) -> bool:
    """``/classify``, ``/features`` and the v2 ``.../infer`` endpoints."""
    return path in INFERENCE_PATHS or (path.startswith("/v2/models/") and path.endswith("/infer"))


class ApiKeyGuard:
    """With a key configured, 401 unless ``Authorization: Bearer <key>`` (constant-time)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.expected = api_key.encode() if api_key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.expected is None
            or scope["type"] != "http"
            or is_public(scope["path"])
            or self.authorized(scope)
        ):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "unauthorized",
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            close=scope.get("method") not in ("GET", "HEAD"),
            path=scope["path"],
        )
        await response(scope, receive, send)

    def authorized(self, scope: Scope) -> bool:
        """Compares raw header bytes: any byte sequence is a wrong key, never an error."""
        assert self.expected is not None
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, token = values[0].strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.expected)


class AdmissionGate:
    """503 before the body when the model is not ready or cannot serve the request in time.

    ``admission`` decides from the scope (service.repository.routing.admit): a refusal, or an
    :class:`Admission` kept in the request's state — its model version held loaded until the
    response is sent, its ticket released once the images are queued.
    """

    def __init__(self, app: ASGIApp, admission: Callable[[Scope], Admission | Refusal]) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not is_inference_path(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        decision = self.admission(scope)
        if isinstance(decision, Refusal):
            response = error_response(
                503,
                decision.code,
                decision.message,
                decision.retry_after_s,
                close=_costly_to_skip(scope),
                path=scope["path"],
            )
            await response(scope, receive, send)
            return
        held = decision.version.lease() if decision.version is not None else nullcontext(None)
        with held as service:
            decision.service = service
            scope.setdefault("state", {})[ADMISSION_STATE_KEY] = decision
            try:
                await self.app(scope, receive, send)
            finally:
                if decision.ticket is not None:
                    decision.ticket.release()  # no-op when the images were queued


# A refused request's body is skipped, not parsed, by the HTTP parser when the connection stays
# open; up to this size skipping is cheaper than a new connection for the client's retry.
SKIP_BODY_MAX_BYTES = 1024 * 1024


def _costly_to_skip(scope: Scope) -> bool:
    """Close rather than keep the connection: a large or chunked (unknown-length) body."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return not value.isdigit() or int(value) > SKIP_BODY_MAX_BYTES
    return True
