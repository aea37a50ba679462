"""Images given by reference rather than as upload parts: base64, ``data:`` URIs, and URLs.

Used by the JSON request bodies (``/classify``, ``/features``), the v2 protocol's BYTES in
JSON, and ``/v1/embeddings``. URLs are fetched only when the operator lists the hosts
(``XCEPTION_URL_HOSTS``; off by default), over http(s) with httpx, concurrently, with no
redirects, a size limit and a total time per URL inside the request's deadline: the service
never becomes a proxy to anywhere else, and a slow remote cannot hold a request for long.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from service import errors
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
    """Which hosts images may be fetched from (empty: none), how big, how long: the slice of
    the settings ``XCEPTION_URL_HOSTS``, ``XCEPTION_MAX_UPLOAD_MB``, ``XCEPTION_URL_TIMEOUT_S``
    name."""

    hosts: frozenset[str]
    max_bytes: int
    timeout_s: float

    def check(self, url: str, where: str) -> None:
        """A :class:`SourceError` unless ``url`` may be fetched (decided without the network)."""
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (urllib checks the port when it is read)
        except ValueError as exc:  # out of range, not a number
            raise SourceError(f"{where}: not a URL that can be fetched ({exc})") from exc
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

    async def fetch_all(self, urls: list[tuple[str, str]], deadline: float) -> list[bytes]:
        """The bytes at each allowed ``(url, where)``, fetched concurrently; each within
        ``XCEPTION_URL_TIMEOUT_S`` in total (not per read: a remote dripping one byte at a
        time is cut off) and all by ``deadline`` (the loop time the request's result is
        due). Any failure is a :class:`SourceError` naming its item."""
        for url, where in urls:
            self.check(url, where)  # all refused at once, before any connection
        left_s = max(deadline - asyncio.get_running_loop().time(), 1e-6)
        limit = min(self.timeout_s, left_s)
        # No redirects (they could leave the allow-list), no proxy or .netrc from the
        # environment: the server fetches exactly the URL it checked.
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            return list(await asyncio.gather(*(self._fetch(client, u, w, limit) for u, w in urls)))

    async def _fetch(self, client: httpx.AsyncClient, url: str, where: str, limit: float) -> bytes:
        try:
            return await asyncio.wait_for(self._read(client, url, where), limit)
        except SourceError:
            raise
        except asyncio.TimeoutError as exc:
            raise SourceError(
                f"{where}: {url} did not answer in full within {limit:g}s "
                "(XCEPTION_URL_TIMEOUT_S, or what the request's deadline left)",
                errors.IMAGE_FETCH_FAILED,
            ) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            raise SourceError(f"{where}: not a URL that can be fetched ({exc})") from exc
        except (httpx.HTTPError, OSError) as exc:  # refused, reset, not HTTP, broken chunks…
            raise SourceError(
                f"{where}: cannot fetch {url} ({type(exc).__name__}: {exc})",
                errors.IMAGE_FETCH_FAILED,
            ) from exc

    async def _read(self, client: httpx.AsyncClient, url: str, where: str) -> bytes:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                moved = " (redirects are not followed)" if response.is_redirect else ""
                raise SourceError(
                    f"{where}: {url} answered {response.status_code}{moved}",
                    errors.IMAGE_FETCH_FAILED,
                )
            data = bytearray()
            async for chunk in response.aiter_raw():
                data += chunk
                if len(data) > self.max_bytes:
                    raise SourceError(
                        f"{where}: {url} is larger than {self.max_bytes:,} bytes "
                        "(XCEPTION_MAX_UPLOAD_MB)",
                        errors.UPLOAD_TOO_LARGE,
                    )
            return bytes(data)


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))
