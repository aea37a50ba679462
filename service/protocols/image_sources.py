"""Images given by reference rather than as upload parts: base64, ``data:`` URIs, and URLs.

Used by the JSON request bodies (``/classify``, ``/features``), the v2 protocol's BYTES in
JSON, and ``/v1/embeddings``. URLs are fetched only when the operator lists the hosts
(``XCEPTION_URL_HOSTS``; off by default), over http(s), with no redirects, a size limit and a
timeout: the service never becomes a proxy to anywhere else.
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from service import errors
from service.config import Settings
from service.errors import ErrorCode


class SourceError(ValueError):
    """An image reference that cannot be used; the message names it (index, reason)."""

    def __init__(self, message: str, error: ErrorCode = errors.INVALID_IMAGE_REFERENCE) -> None:
        super().__init__(message)
        self.error = error


def decode_base64(value: str, where: str) -> bytes:
    """A bare base64 string, or a ``data:image/...;base64,...`` URI → the file's bytes."""
    text = value
    if value.startswith("data:"):
        header, comma, text = value.partition(",")
        if not comma or not header.endswith(";base64"):
            raise SourceError(f"{where}: a data URI must be 'data:image/<type>;base64,<data>'")
        media = header[len("data:") : -len(";base64")]
        if not media.startswith("image/"):
            raise SourceError(
                f"{where}: data URI of type {media!r} is not an image",
                errors.UNSUPPORTED_MEDIA_TYPE,
            )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SourceError(f"{where}: not valid base64 ({exc})") from exc


@dataclass(frozen=True)
class UrlPolicy:
    """Which hosts images may be fetched from (empty: none), how big, how long."""

    hosts: frozenset[str]
    max_bytes: int
    timeout_s: float

    @classmethod
    def for_settings(cls, settings: Settings) -> UrlPolicy:
        """``XCEPTION_URL_HOSTS``, ``XCEPTION_MAX_UPLOAD_MB``, ``XCEPTION_URL_TIMEOUT_S``."""
        return cls(settings.url_host_set, settings.max_upload_bytes, settings.url_timeout_s)

    def check(self, url: str, where: str) -> None:
        """A :class:`SourceError` unless ``url`` may be fetched (decided without the network)."""
        parts = urlsplit(url)
        if not self.hosts:
            raise SourceError(
                f"{where}: URLs are not fetched by this server (XCEPTION_URL_HOSTS is empty); "
                "send the image as base64 or a data URI"
            )
        if parts.scheme not in ("http", "https") or parts.hostname not in self.hosts:
            raise SourceError(
                f"{where}: {parts.scheme}://{parts.hostname} is not an allowed image host "
                f"(XCEPTION_URL_HOSTS: {', '.join(sorted(self.hosts))})"
            )

    def fetch(self, url: str, where: str) -> bytes:
        """The bytes at an allowed ``url`` (see :meth:`check`); blocking: run it in a thread."""
        self.check(url, where)
        opener = urllib.request.build_opener(_NoRedirects())
        try:
            with opener.open(url, timeout=self.timeout_s) as response:
                data: bytes = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            raise SourceError(f"{where}: {url} answered {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise SourceError(f"{where}: cannot fetch {url} ({exc})") from exc
        if len(data) > self.max_bytes:
            raise SourceError(
                f"{where}: {url} is larger than {self.max_bytes:,} bytes (XCEPTION_MAX_UPLOAD_MB)",
                errors.UPLOAD_TOO_LARGE,
            )
        return data


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead anywhere: refuse it rather than follow it off the allow-list."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
