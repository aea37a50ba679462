"""Retry-After, enforced: a client that comes back before the delay it was given waits it out.

An overloaded server answers refusals with ``Retry-After``. Clients that honour it (the openai
SDK, most HTTP libraries with retries) come back later and cost nothing meanwhile. Clients that
do not — a loop resending at once — turn every saved millisecond of a refusal into another
refusal, and on a small machine the refusals themselves take the CPU from inference.

So the gate remembers, per connection, until when its last refusal asked it to wait. A request
arriving on that connection sooner is held, unread (its body stays in the socket; no CPU),
until that time, and then goes through admission like any other: admitted if there is room
by then, refused again if not. Clients that honour ``Retry-After`` are never held, so their
refusals stay immediate; the others are paced to the rate the server asked for.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Scope

# Longest a request is held (a client can be told to wait longer; it is answered by then).
MAX_HOLD_S = 5.0
# Connections remembered at most (each refused one; an entry is a few dozen bytes).
MAX_REMEMBERED = 10_000


class RetryAfterPacing:
    """Per connection (the client's address and port): the loop time before which its next
    inference request is held."""

    def __init__(self) -> None:
        self._not_before: dict[tuple[str, int], float] = {}

    async def hold(self, scope: Scope, stop: asyncio.Event) -> float:
        """Wait until this connection's Retry-After has passed, or ``stop`` (the drain) is
        set; the seconds held (0: none)."""
        client = _client(scope)
        if client is None or not self._not_before:
            return 0.0
        until = self._not_before.get(client)
        if until is None:
            return 0.0
        loop = asyncio.get_running_loop()
        wait = min(until - loop.time(), MAX_HOLD_S)
        if wait <= 0:
            del self._not_before[client]
            return 0.0
        with contextlib.suppress(asyncio.TimeoutError):  # the usual end: the delay is over
            await asyncio.wait_for(stop.wait(), wait)
        return wait

    def refused(self, scope: Scope, retry_after_s: int | None) -> None:
        """Remember that this connection was told to wait ``retry_after_s``."""
        client = _client(scope)
        if client is None or not retry_after_s:
            return
        if len(self._not_before) >= MAX_REMEMBERED:
            self._forget_expired()
        if len(self._not_before) < MAX_REMEMBERED:
            until = asyncio.get_running_loop().time() + retry_after_s
            self._not_before[client] = until

    def admitted(self, scope: Scope) -> None:
        client = _client(scope)
        if client is not None:
            self._not_before.pop(client, None)

    def _forget_expired(self) -> None:
        now = asyncio.get_running_loop().time()
        for client in [c for c, until in self._not_before.items() if until <= now]:
            del self._not_before[client]


def _client(scope: Scope) -> tuple[str, int] | None:
    client = scope.get("client")
    return (client[0], client[1]) if client else None
