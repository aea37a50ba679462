"""The request path's one gate: route → authenticate → admit, then hand on; release at the end.

Every request passes here before any of its body is read:

1. **route** (:class:`~service.edge.routing.RouteTable`): the app's own route the request
   line matches, its declared edge policy, and which model version it asks for;
2. **authenticate** (:class:`~service.edge.auth.Access`): the API key unless the path is
   public; for repository control, the control mode and the admin key;
3. **admit**, for a request that names a model: not while draining, the version resolved
   (ready, or 503 ``not_ready`` / 404 ``model_not_found``) and leased, and — for inference —
   a ticket from the version's admission control (503 ``overloaded`` with ``Retry-After``);
   A client that comes back before the ``Retry-After`` of its last refusal is first held until
   then, unread (:mod:`service.edge.pacing`);
4. hand the request on with its :class:`Passage` in the scope's state, where the routes'
   dependencies and the metrics read which version serves it, and whose
   :class:`~service.core.context.RequestContext` (one clock, the ticket, the client-gone
   signal) the protocols hand to the core;
5. release the lease and the ticket, in one place, once the response is sent.

A refusal here is answered at once in the error envelope, and the connection is closed when
skipping the unread body would cost more than a new connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service import errors
from service.core.context import ClientGone, RequestContext
from service.core.inference import InferenceService
from service.edge.auth import Access, AccessKeys
from service.edge.envelope import error_response
from service.edge.limits import content_length
from service.edge.pacing import RetryAfterPacing
from service.edge.routing import Names, Route, RouteTable
from service.errors import ServiceError
from service.repository.repository import ModelRepository
from service.repository.version import ModelVersion

PASSAGE_STATE_KEY = "passage"
# A refused request's body is skipped, not parsed, by the HTTP parser when the connection stays
# open; up to this size skipping is cheaper than a new connection for the client's retry.
SKIP_BODY_MAX_BYTES = 1024 * 1024


class Passage:
    """One request's way through the edge: its route, the version serving it (leased until
    the response is sent) and its context (clock, admission ticket, client-gone signal)."""

    def __init__(self, route: Route, repository: ModelRepository, context: RequestContext) -> None:
        self.route = route
        self.repository = repository
        self.context = context
        self.version: ModelVersion | None = None
        self.served: tuple[str, str] | None = None  # (name, version), kept after the release

    @property
    def inference(self) -> InferenceService:
        """The serving version's service (only for a request the gate routed to one)."""
        assert self.version is not None and self.version.inference is not None, "not routed"
        return self.version.inference

    def refuse_while_draining(self) -> None:
        if self.repository.drain.draining:
            raise ServiceError(
                errors.SHUTTING_DOWN, "the server is shutting down; retry on another replica"
            )

    def enter(self, name: str | None, version: str | None) -> None:
        """Admit the request to the version ``name``/``version`` route to, or raise why not."""
        self.refuse_while_draining()
        chosen = self.repository.resolve(name, version)
        inference = chosen.lease()
        try:
            if self.route.policy.inference:
                self.context.ticket = inference.admission.admit()
        except ServiceError as refusal:
            chosen.give_back()  # refused: nothing is held
            self.context.retry_after_s = refusal.retry_after_s
            raise
        self.version, self.served = chosen, chosen.key

    def reroute(self, name: str | None, version: str | None) -> InferenceService:
        """The version the route's own reading of the request names (the body's model, or
        FastAPI's parse of the query or path), admitted now unless it is the one the gate
        admitted the request to."""
        held = self.version
        if held is not None and name in (None, held.name) and version in (None, held.version):
            return self.inference
        self.release()
        self.enter(name, version)
        return self.inference

    def release(self) -> None:
        """End the lease and the ticket (the context releases a ticket once: its images may
        be queued already)."""
        self.context.release()
        if self.version is not None:
            self.version.give_back()
        self.version, self.context.ticket = None, None


def passage_of(scope: Scope) -> Passage | None:
    """The request's passage through the gate (None for a request that did not pass it)."""
    passage: Passage | None = scope.get("state", {}).get(PASSAGE_STATE_KEY)
    return passage


class RequestGate:
    """The ASGI middleware running the steps above for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        repository: Callable[[], ModelRepository],
        routes: Sequence[BaseRoute],
        keys: AccessKeys,
    ) -> None:
        self.app = app
        self.repository = repository  # created in the app's lifespan, after this middleware
        # The app's route list itself: read once the app is complete (its first request).
        self.routes = routes
        self.table: RouteTable | None = None
        self.access = Access(keys)
        self.pacing = RetryAfterPacing()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.table is None:
            self.table = RouteTable(self.routes)
        route = self.table.route_of(scope)
        try:
            self.access.check(route, scope)
            if route.policy.inference:
                # Came back before its Retry-After: wait it out (ends early if the drain starts).
                await self.pacing.hold(scope, self.repository().drain.event)
            passage = self._admit(route, scope, receive)
        except ServiceError as refusal:
            if refusal.error is errors.OVERLOADED:
                self.pacing.refused(scope, refusal.retry_after_s)
            response = error_response(refusal, close=_costly_to_skip(scope), path=scope["path"])
            await response(scope, receive, send)
            return
        if route.policy.inference:
            self.pacing.admitted(scope)
        if passage is None:  # no model serves it: nothing to hold
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            passage.release()
            if passage.context.retry_after_s:  # refused once its body was read
                self.pacing.refused(scope, passage.context.retry_after_s)

    def _admit(self, route: Route, scope: Scope, receive: Receive) -> Passage | None:
        """The request's passage, kept in its state, for a request that names a model."""
        if route.policy.names is Names.NOTHING:
            return None
        passage = Passage(route, self.repository(), RequestContext(_disconnect_of(receive)))
        scope.setdefault("state", {})[PASSAGE_STATE_KEY] = passage
        if route.policy.names is Names.BODY:
            # The model is named in the body: admitted to that one once the body is parsed
            # (Passage.reroute), never to another from the headers (a busy default model
            # must not refuse a request for an idle one). A drain still refuses it here.
            passage.refuse_while_draining()
        else:
            passage.enter(route.model, route.version)
        return passage


def _disconnect_of(receive: Receive) -> ClientGone:
    """Returns once the client has gone: awaited only after the body was read (the core
    awaits it beside the result), when ``receive`` has nothing left but the disconnect."""

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    return gone


def _costly_to_skip(scope: Scope) -> bool:
    """Close rather than keep the connection: a large or chunked (unknown-length) body."""
    if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
        return False
    length = content_length(scope)
    return length is None or length > SKIP_BODY_MAX_BYTES
