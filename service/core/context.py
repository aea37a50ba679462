"""One request's context, HTTP-free: its clock, its admission ticket, its client.

Born at the gate (:class:`service.edge.gate.Passage` holds one) and handed to
:meth:`InferenceService.infer`, so that every stage reads the same things instead of
threading them through each protocol by hand:

- **one deadline** (on the event loop's clock): fixed once, the first time a stage asks
  for it (:meth:`deadline`; the body is in by then, as ``XCEPTION_REQUEST_TIMEOUT_S``
  promises "from its body"), tightened only by the request's own shorter timeout (v2's
  ``parameters.timeout``: :meth:`shorten`). URL fetching, decoding, the queue and the
  batcher's expiry all read that one instant (the body's own limit,
  ``XCEPTION_BODY_TIMEOUT_S``, is the edge's: :class:`~service.edge.limits.BodyDeadline`);
- **the ticket**: the request's place in its version's admission (none for a route that
  runs no model), released in one place (:meth:`release`);
- **the client-gone signal**: returns once the client has disconnected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service.core.admission import Ticket

# Returns once the client has disconnected (awaited beside the result, never alone).
ClientGone = Callable[[], Awaitable[None]]


async def never_gone() -> None:
    """A client that never leaves (a caller with no connection: tests, bulk jobs)."""
    await asyncio.Event().wait()


class RequestContext:
    """One request's clock, admission ticket and client-gone signal."""

    def __init__(self, gone: ClientGone = never_gone) -> None:
        self.gone = gone
        self.ticket: Ticket | None = None
        # Refused as overloaded once its body was read: the Retry-After it was given, which
        # the edge's pacing enforces on the client's next request as on a refusal it made.
        self.retry_after_s: int | None = None
        self.own_timeout_s: float | None = None  # the request's own, if it gave one
        self.timeout_s: float | None = None  # the budget the deadline was fixed with
        self._deadline: float | None = None

    def shorten(self, timeout_s: float | None) -> None:
        """The request asks for a result within ``timeout_s`` (None: it does not); only a
        tighter bound than the service's applies, and only before the deadline is fixed."""
        if timeout_s is not None:
            self.own_timeout_s = timeout_s

    def deadline(self, limit_s: float) -> float:
        """The loop time by which the result is due: fixed the first time any stage asks,
        ``limit_s`` (the service's request timeout) or the request's own, if shorter, from
        then. Every later call returns the same instant."""
        if self._deadline is None:
            own = self.own_timeout_s
            self.timeout_s = limit_s if own is None else min(limit_s, own)
            self._deadline = asyncio.get_running_loop().time() + self.timeout_s
        return self._deadline

    def release(self) -> None:
        """The request has ended, or its images are queued (they count in the queue now):
        its ticket leaves the admission estimate. The one place a ticket is given back."""
        if self.ticket is not None:
            self.ticket.release()
