"""Plain exceptions of the artifact layer: what went wrong, no HTTP status.

``service.errors`` maps each to a status and an error code; ``bulk`` and ``export`` skip
unreadable images or print the message as one line.
"""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """The model file or the requested device cannot be used."""


class ImageError(ValueError):
    """An image file that cannot be turned into the model's pixels; the message names it."""


class EmptyImage(ImageError):
    """Zero bytes."""


class NotAnImage(ImageError):
    """Not a format we can read at all."""


class UndecodableImage(ImageError):
    """An image format we know, but the file is corrupt or an unsupported variant."""


class ImageTooLarge(ImageError):
    """More pixels than the limit: refused from the header, before decoding."""


class UnsupportedAspectRatio(ImageError):
    """Valid, but resizing it would cost far more than its size suggests."""


class ImageTooComplex(ImageError):
    """Valid, but its structure (progressive scans, strip or tile counts) would make the
    decode cost far more than its pixels: refused from the header."""


def was_interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C, or came from one: a KeyboardInterrupt raised while a native
    extension initialises (onnxruntime, torch) surfaces as the ImportError it caused, and the
    CLIs answer both with status 130 and one line."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:  # a chain may loop back on itself
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False
