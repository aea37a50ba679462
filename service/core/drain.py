"""The server's graceful shutdown, as every layer sees it: started or not, and by when.

Set when SIGTERM's drain starts (:mod:`service.edge.server`), before connections drain: the
gate refuses new requests, uploads still arriving are cut off, and requests waiting for the
model get a deadline that ends inside the drain time, so every client gets an answer.
"""

from __future__ import annotations

import asyncio
import math


class DrainSignal:
    """Whether the drain has begun, and the loop time by which every request must answer."""

    def __init__(self, drain_timeout_s: float) -> None:
        self.drain_timeout_s = drain_timeout_s
        self.event = asyncio.Event()
        self.deadline = math.inf  # loop.time() by which every request must have answered

    def begin(self) -> None:
        """Called once by the server when shutdown starts."""
        if not self.event.is_set():
            # Keep a margin for the answer itself to be written before the server gives up.
            self.deadline = asyncio.get_running_loop().time() + self.drain_timeout_s - 1.0
            self.event.set()

    @property
    def draining(self) -> bool:
        return self.event.is_set()
