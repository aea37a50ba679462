"""What the edge bounds after the headers: chunk trailers, protocol upgrades and clients that
leave mid-upload, against a real ``xception-serve`` over raw sockets (issue 34, classes 1-2).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.loadgen import ServiceProcess
from tests.service.conftest import image_bytes, live_service

CAT = image_bytes("chelsea.jpg")
BOUNDARY = b"b0und"
MULTIPART = (
    b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="cat.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n" + CAT + b"\r\n--" + BOUNDARY + b"--\r\n"
)
HEADER_KB = 8
SETTINGS = {
    "device": "cpu",
    "max_header_kb": HEADER_KB,
    "body_timeout_s": 6,
    "log_level": "info",  # the 499 line is logged at INFO
}


@pytest.fixture(scope="module")
def server(exported_model: Path) -> Iterator[ServiceProcess]:
    with live_service(exported_model, SETTINGS) as live:
        yield live
        output = live.logged()
        assert "Traceback" not in output and "Exception in ASGI" not in output, output


class Answers:
    """Reads the HTTP/1.1 answers that come back on one socket, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"closed without (the rest of) an answer after {self.buffer[:200]!r}"
        self.buffer += chunk

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body


def connect(server: ServiceProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def classify_head(extra: bytes, framing: bytes) -> bytes:
    return (
        b"POST /classify HTTP/1.1\r\nHost: x\r\n" + extra + b"Content-Type: multipart/form-data; "
        b"boundary=" + BOUNDARY + b"\r\n" + framing + b"\r\n"
    )


def keep_sending(sock: socket.socket, first: bytes, more: bytes, limit_bytes: int) -> None:
    """``first``, then ``more`` again and again until the server closes (or ``limit_bytes``)."""

    def send() -> None:
        try:
            sock.sendall(first)
            for _ in range(limit_bytes // len(more)):
                sock.sendall(more)
        except OSError:
            pass  # the server answered and closed: what the test waits for

    threading.Thread(target=send, daemon=True).start()


@pytest.mark.parametrize(
    ("first", "more"),
    [
        (b"0\r\n", b"x-trailer: v\r\n"),  # many small trailer fields (RSS grew 1.6 GB)
        (b"0\r\nx-trailer: ", b"v" * 4096),  # one endless trailer value (the loop stalled)
    ],
    ids=["many-fields", "endless-value"],
)
def test_trailers_count_against_the_header_limit(
    server: ServiceProcess, first: bytes, more: bytes
) -> None:
    sock = connect(server)
    chunk = b"%x\r\n" % len(MULTIPART) + MULTIPART + b"\r\n"
    head = classify_head(b"", b"Transfer-Encoding: chunked\r\n")
    started = time.monotonic()
    keep_sending(sock, head + chunk + first, more, limit_bytes=64 * 1024 * 1024)
    status, _, body = Answers(sock).next()
    # Past 8 KB plus a quarter of the body, not at the body's 6 s deadline.
    assert (status, json.loads(body)["error"]["code"]) == (431, "headers_too_large")
    assert time.monotonic() - started < 3
    assert sock.recv(1) == b""


def test_small_trailers_are_read_and_the_request_answered(server: ServiceProcess) -> None:
    sock = connect(server)
    chunk = b"%x\r\n" % len(MULTIPART) + MULTIPART + b"\r\n"
    head = classify_head(b"Connection: close\r\n", b"Transfer-Encoding: chunked\r\n")
    sock.sendall(head + chunk + b"0\r\nx-checksum: abc\r\n\r\n")
    status, _, body = Answers(sock).next()
    assert status == 200, body
    assert len(json.loads(body)["results"][0]["predictions"]) == 5


@pytest.mark.parametrize("upgrade", [b"websocket", b"h2c"])
def test_an_upgrade_request_with_a_body_is_answered_as_http_1_1(
    server: ServiceProcess, upgrade: bytes
) -> None:
    """A POST that asks to switch protocols (curl --http2 sends ``Upgrade: h2c``) keeps its
    body: websocket was never answered, h2c dropped the body."""
    sock = connect(server)
    extra = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: " + upgrade + b"\r\n"
    extra += b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    sock.sendall(classify_head(extra, b"Content-Length: %d\r\n" % len(MULTIPART)) + MULTIPART)
    status, headers, body = Answers(sock).next()
    assert status == 200, body
    assert "upgrade" not in headers
    assert len(json.loads(body)["results"][0]["predictions"]) == 5


def test_requests_pipelined_after_an_upgrade_request_are_answered(server: ServiceProcess) -> None:
    sock = connect(server)
    upgrade = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(upgrade + b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answers = Answers(sock)
    first, second = answers.next(), answers.next()
    # The WebSocket handshake is not refused as text/plain: the route answers it as HTTP.
    assert first[0] == 200 and first[1]["content-type"] == "application/json"
    assert second[0] == 404 and json.loads(second[2])["error"]["code"] == "not_found"


def test_a_client_that_leaves_mid_upload_is_a_499(server: ServiceProcess) -> None:
    sock = connect(server)
    head = classify_head(b"", b"Content-Length: %d\r\n" % len(MULTIPART))
    sock.sendall(head + MULTIPART[: len(MULTIPART) // 2])
    time.sleep(0.5)  # the route is reading the body
    sock.close()
    deadline = time.monotonic() + 10
    counted: list[str] = []
    while time.monotonic() < deadline and not counted:
        time.sleep(0.2)
        metrics = httpx.get(f"{server.url}/metrics").text.splitlines()
        counted = [line for line in metrics if 'endpoint="/classify"' in line and "_total" in line]
    assert any('status="499"' in line for line in counted), counted
    assert not any('status="500"' in line for line in counted), counted
    assert "POST /classify: 499 the client disconnected mid-upload" in server.logged()
