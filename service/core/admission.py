"""Admission control: decide, before a request's body is read, whether it can be served in time.

A full queue is not the only reason to refuse: on a CPU, 64 queued images mean ~10 s of
waiting. So a request is admitted only while the work ahead of it — images queued, the batch
in flight, and the images of requests admitted but not queued yet — would run within
``max_wait_s`` at the measured time per image, and while those images number fewer than
``max_queue``. This is the one place that bound lives: the batcher trusts it.

A request is admitted twice over with one :class:`Ticket`: from its headers (one image
reserved, before the body), then with its real image count once the body is parsed and
before anything is decoded (:meth:`Ticket.claim`). Refusing early is what keeps overload
cheap: a refusal costs the headers, not a parsed 20 MB body. ``Retry-After`` comes from the
same estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service import errors
from service.core.batcher import DynamicBatcher
from service.errors import ServiceError


@dataclass
class Ticket:
    """One admitted request's images in the estimate until they are queued."""

    control: AdmissionControl
    images: int = 1  # reserved: one from the headers, the real count once claimed
    claimed: bool = False
    released: bool = False

    def claim(self, count: int) -> None:
        """Reserve ``count`` images instead of one, or raise ``overloaded`` if they do not fit."""
        control = self.control
        others = control.batcher.queue_depth + control.reserved - self.images
        control.check_room(others, count, f" and {count} in this request")
        control.reserved += count - self.images
        self.images, self.claimed = count, True

    def release(self) -> None:
        """Idempotent: the images are queued (they count there now), or the request ended."""
        if not self.released:
            self.released = True
            self.control.reserved -= self.images


class AdmissionControl:
    """Admits requests against a bound on expected waiting time and on images waiting."""

    def __init__(self, batcher: DynamicBatcher, *, max_queue: int, max_wait_s: float) -> None:
        self.batcher = batcher
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.reserved = 0  # images of admitted requests that are not queued yet

    def images_ahead(self) -> int:
        """Images that will run before a request admitted now."""
        return self.batcher.queue_depth + self.batcher.in_flight + self.reserved

    def expected_wait_s(self) -> float:
        """Seconds a request admitted now would wait before its own batch starts."""
        return self.images_ahead() * self.batcher.stats.seconds_per_image

    def admit(self) -> Ticket:
        """A ticket holding one image's place (release it once the images are queued); raises
        ``overloaded`` with ``Retry-After`` when the work ahead is over either bound."""
        self.check_room(self.batcher.queue_depth + self.reserved, 1)
        wait_s = self.expected_wait_s()
        if wait_s > self.max_wait_s:
            self.batcher.stats.rejected_queue_wait += 1
            raise self.overloaded(
                f"the images ahead would take ~{wait_s:.1f}s to run (limit "
                f"{self.max_wait_s:g}s, XCEPTION_MAX_QUEUE_WAIT_S)"
            )
        self.reserved += 1
        return Ticket(self)

    def check_room(self, waiting: int, count: int, arriving: str = "") -> None:
        """``overloaded`` unless ``count`` more images fit beside the ``waiting`` ones."""
        if waiting + count > self.max_queue:
            self.batcher.stats.rejected_queue_full += 1
            raise self.overloaded(
                f"{waiting} images queued or arriving{arriving} (limit {self.max_queue}, "
                "XCEPTION_MAX_QUEUE)"
            )

    def overloaded(self, detail: str) -> ServiceError:
        return ServiceError(
            errors.OVERLOADED,
            f"the service is at capacity: {detail}; retry after the Retry-After delay "
            "or on another replica",
            retry_after_s=self.retry_after_s(),
        )

    def retry_after_s(self) -> int:
        """Whole seconds until the work ahead has drained below the admission bound."""
        per_image = self.batcher.stats.seconds_per_image
        excess_s = self.expected_wait_s() - self.max_wait_s + per_image
        excess_images = (self.images_ahead() + 1 - self.max_queue) * per_image
        return max(1, math.ceil(max(excess_s, excess_images)))
