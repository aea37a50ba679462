"""Admission control: decide, before a request's body is read, whether it can be served in time.

A full queue is not the only reason to refuse: on a CPU, 64 queued images mean ~10 s of
waiting. So a request is admitted only while the work ahead of it — images queued, the batch
in flight, and requests admitted whose images are not queued yet — would run within
``max_wait_s`` at the measured time per image. Refusing early is what keeps overload cheap:
a refusal costs the headers, not a parsed 20 MB body, and the time it saves goes to the
requests that were admitted. ``Retry-After`` comes from the same estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.batcher import DynamicBatcher

if TYPE_CHECKING:  # the repository builds on admission, not the other way round
    from service.inference import InferenceService
    from service.repository.version import ModelVersion


@dataclass
class Ticket:
    """One admitted request's place in the estimate until its images are queued."""

    control: AdmissionControl
    released: bool = False

    def release(self) -> None:
        """Idempotent: the images are queued (they count there now), or the request ended."""
        if not self.released:
            self.released = True
            self.control.reserved -= 1


@dataclass
class Admission:
    """A request let through before its body: the model version its URL routes to (held
    loaded until the request is answered) and its ticket. Both None when the URL does not
    say (``/v1/embeddings`` names its model in the body: routed and admitted after it)."""

    version: ModelVersion | None = None
    ticket: Ticket | None = None
    service: InferenceService | None = None  # the version's service, set while it is held


@dataclass(frozen=True)
class Refusal:
    """Why a request was not admitted (an error code and message), and when to try again."""

    code: str
    message: str
    retry_after_s: int


class AdmissionControl:
    """Admits requests against a bound on expected waiting time and on queued images."""

    def __init__(self, batcher: DynamicBatcher, *, max_queue: int, max_wait_s: float) -> None:
        self.batcher = batcher
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.reserved = 0  # admitted requests whose images are not queued yet

    def images_ahead(self) -> int:
        """Images that will run before a request admitted now (one per reserved request)."""
        return self.batcher.queue_depth + self.batcher.in_flight + self.reserved

    def expected_wait_s(self) -> float:
        """Seconds a request admitted now would wait before its own batch starts."""
        return self.images_ahead() * self.batcher.stats.seconds_per_image

    def admit(self) -> Ticket | Refusal:
        """A ticket (release it once the images are queued), or why not and when to retry."""
        waiting = self.batcher.queue_depth + self.reserved
        wait_s = self.expected_wait_s()
        if waiting + 1 > self.max_queue:
            self.batcher.stats.rejected_queue_full += 1
            return self._overloaded(
                f"{waiting} images queued or arriving (limit {self.max_queue}, XCEPTION_MAX_QUEUE)"
            )
        if wait_s > self.max_wait_s:
            self.batcher.stats.rejected_queue_wait += 1
            return self._overloaded(
                f"the images ahead would take ~{wait_s:.1f}s to run (limit "
                f"{self.max_wait_s:g}s, XCEPTION_MAX_QUEUE_WAIT_S)"
            )
        self.reserved += 1
        return Ticket(self)

    def _overloaded(self, detail: str) -> Refusal:
        return Refusal(
            "overloaded",
            f"the service is at capacity: {detail}; retry after the Retry-After delay "
            "or on another replica",
            self.retry_after_s(),
        )

    def retry_after_s(self) -> int:
        """Whole seconds until the work ahead has drained below the admission bound."""
        per_image = self.batcher.stats.seconds_per_image
        excess_s = self.expected_wait_s() - self.max_wait_s + per_image
        excess_images = (self.images_ahead() + 1 - self.max_queue) * per_image
        return max(1, math.ceil(max(excess_s, excess_images)))
