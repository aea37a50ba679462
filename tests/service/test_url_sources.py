"""Image URLs (``XCEPTION_URL_HOSTS``) against remotes that misbehave: every item is answered or
refused within ``XCEPTION_URL_TIMEOUT_S`` + 1 s, several URLs are fetched at once, nothing a
remote does is a 500, and a redirect is never followed (not even to an allowed host)."""

from __future__ import annotations

import base64
import contextlib
import io
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.loadgen import ServiceProcess
from tests.service.conftest import image_bytes, live_service

URL_TIMEOUT_S = 1.0
PNG = image_bytes("coffee.png")
MAX_UPLOAD_MB = 1


def _noise_png(megabytes: int) -> bytes:
    """A valid PNG of about ``megabytes`` MiB (noise does not compress): served whole, it
    would be decoded and answered 200, so only the size limit makes it a 413."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5) + 8
    noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


HUGE_PNG = _noise_png(3)


class Remote(socketserver.ThreadingTCPServer):
    """A loopback 'image host' whose paths misbehave on purpose; it records every path asked."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.asked: list[str] = []
        self.asked_at: list[float] = []  # time.monotonic() of each request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().decode("latin-1")
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        path = line.split(" ")[1] if line.count(" ") >= 2 else ""
        remote: Remote = self.server  # type: ignore[assignment]
        remote.asked.append(path)
        remote.asked_at.append(time.monotonic())
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
        if path == "/ok.png":
            self.wfile.write(head + b"Content-Length: %d\r\n\r\n" % len(PNG) + PNG)
        elif path.startswith("/slow.png"):  # the whole answer after 0.7 s
            time.sleep(0.7)
            self.wfile.write(head + b"Content-Length: %d\r\n\r\n" % len(PNG) + PNG)
        elif path == "/drip.png":  # one byte every 0.3 s, for ever: each read is quick
            self.wfile.write(head + b"Content-Length: %d\r\n\r\n" % len(PNG))
            for byte in PNG:
                time.sleep(0.3)
                self.wfile.write(bytes([byte]))
        elif path == "/garbage":
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n")
        elif path == "/chunks":
            self.wfile.write(head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nbroken\r\n")
        elif path == "/huge.png":  # 3 MiB (the limit is 1), sent 64 KB at a time
            self.wfile.write(head + b"Content-Length: %d\r\n\r\n" % len(HUGE_PNG))
            with contextlib.suppress(OSError):  # the service hangs up once past its limit
                for start in range(0, len(HUGE_PNG), 64 * 1024):
                    self.wfile.write(HUGE_PNG[start : start + 64 * 1024])
                    self.wfile.flush()
        elif path == "/redirect":
            self.wfile.write(
                b"HTTP/1.1 302 Found\r\nLocation: /ok.png\r\nContent-Length: 0\r\n\r\n"
            )
        else:
            self.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    server = Remote()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def service(exported_model: Path, remote: Remote) -> Iterator[ServiceProcess]:
    settings = {"device": "cpu", "url_hosts": "127.0.0.1", "url_timeout_s": URL_TIMEOUT_S,
                "request_timeout_s": 20, "max_queue_wait_s": 60,
                "max_upload_mb": MAX_UPLOAD_MB}  # fmt: skip
    with live_service(exported_model, settings) as live:
        yield live


def embed(service: ServiceProcess, inputs: list[str]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(
        f"{service.url}/v1/embeddings", json={"model": "xception", "input": inputs}, timeout=60
    )
    return response, time.monotonic() - started


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/drip.png", 502, "did not answer in full within 1s"),
        ("/garbage", 502, "cannot fetch"),
        ("/chunks", 502, "cannot fetch"),
        ("/missing.png", 502, "answered 404"),
        ("/redirect", 502, "redirects are not followed"),
    ],
)
def test_a_misbehaving_remote_is_a_clear_answer_in_time(
    service: ServiceProcess, remote: Remote, path: str, status: int, fragment: str
) -> None:
    response, seconds = embed(service, [f"{remote.url}{path}"])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == "image_fetch_failed" and fragment in error["message"], error
    assert seconds < URL_TIMEOUT_S + 1.0


def test_a_redirect_is_not_followed_even_to_an_allowed_host(
    service: ServiceProcess, remote: Remote
) -> None:
    """The Location is on the allow-list; still, the server fetches only the URL it checked."""
    remote.asked.clear()
    response, _ = embed(service, [f"{remote.url}/redirect"])
    assert response.status_code == 502
    assert remote.asked == ["/redirect"]  # /ok.png was never asked for


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:99999/x.png", "http://127.0.0.1:80/a\x01b.png", "http://127.0.0.1:-1/"],
    ids=["port-out-of-range", "control-character", "negative-port"],
)
def test_an_unusable_url_is_400(service: ServiceProcess, url: str) -> None:
    response, _ = embed(service, [url])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_image_reference"


def test_several_urls_are_fetched_at_once(service: ServiceProcess, remote: Remote) -> None:
    """Five URLs that each take 0.7 s to answer are all asked for before the first answers
    (one after another, they would arrive 0.7 s apart), and the request is answered."""
    remote.asked.clear()
    remote.asked_at.clear()
    response, _ = embed(service, [f"{remote.url}/slow.png?{i}" for i in range(5)])
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 5
    assert len(remote.asked_at) == 5
    assert max(remote.asked_at) - min(remote.asked_at) < 0.5, remote.asked_at


def test_a_url_beside_base64_keeps_input_order(service: ServiceProcess, remote: Remote) -> None:
    inline = base64.b64encode(PNG).decode()
    response, _ = embed(service, [f"{remote.url}/ok.png", inline])
    vectors = [item["embedding"] for item in response.json()["data"]]
    assert response.status_code == 200 and len(vectors) == 2
    assert max(abs(a - b) for a, b in zip(*vectors, strict=True)) < 1e-5  # the same image


def test_a_url_image_over_the_size_limit_is_413_not_fetched_whole(
    service: ServiceProcess, remote: Remote
) -> None:
    """The limit is on the total fetched, not on each chunk: a 3 MiB image sent in 64 KB
    pieces, past the 1 MiB limit, is refused with 413 (fetched whole, it would decode: 200)."""
    assert len(HUGE_PNG) > 2 * MAX_UPLOAD_MB * 1024 * 1024
    response, seconds = embed(service, [f"{remote.url}/huge.png"])
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "upload_too_large" and "larger than 1,048,576 bytes" in error["message"]
    assert seconds < URL_TIMEOUT_S + 1.0
