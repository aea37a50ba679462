"""What one version's inference is allowed: its slice of the settings, owned by the core.

The core reads no settings module: ``service.config`` builds these from the ``XCEPTION_*``
variables (each field is named after its variable) and the wiring hands them in.
"""

from __future__ import annotations

from dataclasses import dataclass

from service import errors
from service.errors import ServiceError


@dataclass(frozen=True)
class ImageLimits:
    """What one accepted image may cost to decode (``XCEPTION_MAX_PIXELS``, ``…_MAX_ASPECT_RATIO``,
    ``…_IMAGE_FORMATS``)."""

    max_pixels: int
    max_aspect_ratio: float
    image_formats: frozenset[str]


@dataclass(frozen=True)
class Admission:
    """How much waiting work a version takes on, and for how long a request may wait."""

    max_queue: int  # images queued or arriving
    max_queue_wait_s: float  # expected wait past which a request is refused
    max_files: int  # images in one request
    request_timeout_s: float  # for a result, from the request's body

    def check_files(self, count: int) -> None:
        """413 past ``XCEPTION_MAX_FILES``: the one check, made as soon as a protocol knows
        how many images a request holds, before it builds anything per image."""
        if count > self.max_files:
            raise self.too_many_files(count)

    def too_many_files(self, count: int) -> ServiceError:
        return ServiceError(
            errors.TOO_MANY_FILES,
            f"{count:,} images in one request; the limit is {self.max_files} (XCEPTION_MAX_FILES)",
        )


@dataclass(frozen=True)
class Batching:
    """The batcher's bounds (None: the provider's tuned default, core.batcher)."""

    max_batch_size: int | None
    max_batch_delay_ms: float | None


@dataclass(frozen=True)
class InferenceLimits:
    """Everything an :class:`~service.core.inference.InferenceService` is configured with."""

    admission: Admission
    batching: Batching
    images: ImageLimits
