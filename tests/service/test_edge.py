"""The connection edge, as an attacker meets it: a real ``xception-serve`` and raw sockets.

Slow headers and bodies, oversized headers, connection floods, unauthenticated uploads,
non-ASCII keys and overload all get an answer in the error envelope, quickly and without
reading what they did not need to read; SIGTERM cuts off an upload that stalls.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.loadgen import ServiceProcess
from tests.service.conftest import files, image_bytes

CAT = image_bytes("chelsea.jpg")
KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_CONNECTIONS = 6
EDGE_SETTINGS = {
    "device": "cpu",
    "max_batch_size": 4,
    "max_files": 16,
    "api_key": KEY,
    # Far apart, so that a limit enforced with the other's setting shows in the timing.
    "header_timeout_s": 1,
    "body_timeout_s": 4,
    "max_header_kb": 8,
    "max_connections": MAX_CONNECTIONS,
    # Any work ahead refuses a request: overload is easy to reach on purpose.
    "max_queue_wait_s": 0.01,
}


@pytest.fixture(scope="module")
def edge(exported_model: Path) -> Iterator[ServiceProcess]:
    live = ServiceProcess(exported_model, EDGE_SETTINGS)
    try:
        live.wait_ready()
        yield live
        # Nothing the tests sent made the server log an exception (checked once they all ran,
        # whichever of them ran).
        live.process.send_signal(signal.SIGTERM)
        live.process.wait(30)
        output = live.logged()
        assert "Traceback" not in output and "Exception in ASGI" not in output, output
    finally:
        live.stop()


def connect(server: ServiceProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=15)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of one response; then asserts the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the body"
        body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body)


def assert_closed(sock: socket.socket) -> None:
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(1) == b""


def request_head(path: str, length: int, *extra: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: x",
        f"Content-Length: {length}",
        "Content-Type: multipart/form-data; boundary=b",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_trickled_headers_get_408_in_the_envelope_and_are_closed(edge: ServiceProcess) -> None:
    with connect(edge) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        status, headers, body = read_answer(sock)
        assert status == 408 and body["error"]["code"] == "request_timeout"
        assert "XCEPTION_HEADER_TIMEOUT_S" in body["error"]["message"]
        assert headers["connection"] == "close"
        assert 0.9 < time.monotonic() - started < 2.5  # the header limit (1 s), not the body's
        assert_closed(sock)


def test_a_connection_that_sends_nothing_is_closed(edge: ServiceProcess) -> None:
    with connect(edge) as sock:
        status, _, _ = read_answer(sock)
        assert status == 408
        assert_closed(sock)


def test_oversized_headers_get_431_before_the_parser_buffers_them(edge: ServiceProcess) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 20_000)
        status, _headers, body = read_answer(sock)
        assert status == 431 and body["error"]["code"] == "headers_too_large"
        assert "XCEPTION_MAX_HEADER_KB" in body["error"]["message"]
        assert_closed(sock)
    # Headers under the limit still work.
    padded = httpx.get(f"{edge.url}/healthz", headers={"X-Padding": "a" * 4000})
    assert padded.status_code == 200


def test_stalled_body_gets_408_in_the_envelope(edge: ServiceProcess) -> None:
    with connect(edge) as sock:
        started = time.monotonic()
        sock.sendall(request_head("/classify", 100_000, f"Authorization: Bearer {KEY}") + b"--b")
        status, headers, body = read_answer(sock)
        assert status == 408 and body["error"]["code"] == "request_timeout"
        assert "XCEPTION_BODY_TIMEOUT_S" in body["error"]["message"]
        assert 3.9 < time.monotonic() - started < 8  # the body limit (4 s), not the header's
        assert headers["connection"] == "close"
        assert_closed(sock)


def test_the_body_limit_bounds_the_whole_body_not_each_chunk(edge: ServiceProcess) -> None:
    """A byte every 0.3 s never leaves a gap as long as the limit, yet the body as a whole
    takes far longer: cut off at the 4 s limit, not when the client stops."""
    stop = threading.Event()
    part = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )  # then the file's bytes, one at a time: a valid body all along
    with connect(edge) as sock:
        sock.sendall(request_head("/classify", 100_000, f"Authorization: Bearer {KEY}") + part)
        started = time.monotonic()

        def trickle() -> None:
            while not stop.wait(0.3):
                try:
                    sock.sendall(b"x")
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            status, _headers, body = read_answer(sock)
        finally:
            stop.set()
            sender.join()
        assert status == 408 and body["error"]["code"] == "request_timeout"
        assert 3.9 < time.monotonic() - started < 8


def test_chunked_upload_past_the_limit_gets_413_and_is_closed(edge: ServiceProcess) -> None:
    """No Content-Length: the bytes are counted as they arrive; past 20 MB the answer comes
    at once, while the client is still sending, and the rest is never read."""
    chunk = b"x" * (1 << 20)
    with connect(edge) as sock:
        head = request_head("/classify", 0, f"Authorization: Bearer {KEY}")
        sock.sendall(head.replace(b"Content-Length: 0", b"Transfer-Encoding: chunked"))
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        for _ in range(21):  # 21 MB of one file, never the terminating chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, headers, body = read_answer(sock)
        assert status == 413 and body["error"]["code"] == "upload_too_large"
        assert "XCEPTION_MAX_UPLOAD_MB" in body["error"]["message"]
        assert headers["connection"] == "close"
        assert_closed(sock)


def test_connections_past_the_cap_get_503_in_the_envelope(edge: ServiceProcess) -> None:
    held = [connect(edge) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # stalls, holding its connection
        # The server takes them in as its loop gets to them: ask until the cap shows.
        deadline = time.monotonic() + 10
        while True:
            with connect(edge) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                status, headers, body = read_answer(extra)
            if status != 200 or time.monotonic() > deadline:
                break
        assert status == 503 and body["error"]["code"] == "too_many_connections"
        assert "Retry-After" in {k.title(): v for k, v in headers.items()}
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10  # the closes are seen as the loop gets to them
    while httpx.get(f"{edge.url}/healthz").status_code != 200:
        assert time.monotonic() < deadline, "the cap did not free up after the closes"


def test_no_key_is_refused_before_the_body_is_sent(edge: ServiceProcess) -> None:
    with connect(edge) as sock:
        # 19 MB announced, not a byte of it sent: the answer cannot wait for the body.
        sock.sendall(request_head("/classify", 19_000_000))
        status, headers, body = read_answer(sock)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        assert headers["connection"] == "close"


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer s\xe9cret", b"Bearer \xff\xfe", b"Bearer", b"Basic czNjcmV0", b"bearer  wrong"],
)
def test_malformed_or_non_ascii_keys_get_401(edge: ServiceProcess, authorization: bytes) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: " + authorization)
        sock.sendall(b"\r\n\r\n")
        status, _, body = read_answer(sock)
        assert status == 401 and body["error"]["code"] == "unauthorized"
    assert httpx.get(f"{edge.url}/v1/models", headers=AUTH).status_code == 200


def test_overload_is_refused_before_the_body_with_retry_after(edge: ServiceProcess) -> None:
    upload = files(*[(f"{i}.jpg", CAT) for i in range(16)])
    big: dict[str, httpx.Response] = {}
    worker = threading.Thread(
        target=lambda: big.update(
            r=httpx.post(f"{edge.url}/classify", files=upload, headers=AUTH, timeout=120)
        )
    )
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while (
            httpx.get(f"{edge.url}/v1/models", headers=AUTH).json()["runtime"]["batching"][
                "expected_wait_s"
            ]
            < 0.5
        ):
            assert time.monotonic() < deadline, "the 16-image request never queued"
            time.sleep(0.02)
        with connect(edge) as sock:
            sock.sendall(request_head("/features", 5_000_000, f"Authorization: Bearer {KEY}"))
            status, headers, body = read_answer(sock)  # answered with no body sent
        assert status == 503 and body["error"]["code"] == "overloaded"
        assert "XCEPTION_MAX_QUEUE_WAIT_S" in body["error"]["message"]
        assert headers["connection"] == "close"
        assert int(headers["retry-after"]) >= 1
    finally:
        worker.join(120)
    assert big["r"].status_code == 200 and len(big["r"].json()["results"]) == 16
    counters = httpx.get(f"{edge.url}/v1/models", headers=AUTH).json()["runtime"]["counters"]
    assert counters["rejected_queue_wait"] >= 1


def test_sigterm_cuts_off_a_stalled_upload_with_the_envelope(exported_model: Path) -> None:
    live = ServiceProcess(exported_model, {"device": "cpu", "drain_timeout_s": 8})
    try:
        live.wait_ready()
        with connect(live) as sock:
            sock.sendall(request_head("/classify", 100_000) + b"--b\r\n")
            time.sleep(0.3)
            started = time.monotonic()
            live.process.send_signal(signal.SIGTERM)
            status, headers, body = read_answer(sock)
            assert status == 503 and body["error"]["code"] == "shutting_down"
            assert headers["connection"] == "close"
        assert live.process.wait(30) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 8
        output = live.logged()
        assert "Traceback" not in output, output
    finally:
        live.stop()


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /v2/models/xception/infer HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    ],
    ids=["control-character-in-a-header", "two-lengths", "tls-hello"],
)
def test_bytes_that_are_not_http_get_400_in_the_envelope(edge: ServiceProcess, raw: bytes) -> None:
    """Found by the fuzzer: what the HTTP parser refuses was uvicorn's text/plain 400."""
    with connect(edge) as sock:
        sock.sendall(raw)
        status, headers, body = read_answer(sock)
        assert status == 400 and headers["content-type"] == "application/json"
        assert body["error"]["code"] == "http_error"
        assert_closed(sock)
