"""A request can be followed: X-Request-ID on every answer, the same id on its log lines."""

from __future__ import annotations

import http.server
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient

from tests.service.conftest import files, image_bytes, live_service


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [("trace-42", True), ("a b\r\nX-Injected: 1", False), ("x" * 500, False), (None, False)],
    ids=["sane", "header-injection", "too-long", "absent"],
)
def test_every_answer_carries_a_request_id(
    client: TestClient, sent: str | None, echoed: bool
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent.replace("\r\n", " ")}
    ok = client.get("/healthz", headers=headers)
    error = client.post("/classify", files=files(("x.txt", b"text")), headers=headers)
    for response in (ok, error):
        request_id = response.headers["x-request-id"]
        assert (request_id == sent) is echoed
        assert 1 <= len(request_id) <= 128 and " " not in request_id
    assert ok.headers["x-request-id"] != error.headers["x-request-id"] or echoed


def test_json_logs_carry_the_request_id(exported_model: Path) -> None:
    settings = {"device": "cpu", "log_format": "json", "log_level": "info", "max_queue_wait_s": 60}
    with live_service(exported_model, settings) as live:
        cat = files(("cat.jpg", image_bytes("chelsea.jpg")))
        sent = httpx.post(f"{live.url}/classify", files=cat, headers={"X-Request-ID": "find-me"})
        assert sent.headers["x-request-id"] == "find-me"
        # A v2 request's id becomes its request id.
        client = triton.InferenceServerClient(f"127.0.0.1:{live.port}")
        tensor = triton.InferInput("image_bytes", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([image_bytes("chelsea.jpg")], dtype=np.object_))
        client.infer("xception", [tensor], request_id="v2-id-7")
        live.process.send_signal(signal.SIGTERM)
        live.process.wait(30)
        output = live.logged()
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    access = {r["request_id"]: r["message"] for r in records if r["logger"] == "uvicorn.access"}
    assert "POST /classify" in access["find-me"]
    assert "POST /v2/models/xception/infer" in access["v2-id-7"]


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A stand-in OpenTelemetry collector: accepts OTLP/HTTP trace exports, keeps the bodies."""
    received: list[bytes] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_spans_are_exported_over_otlp(
    exported_model: Path,
    otlp_receiver: tuple[str, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, received = otlp_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "xception-under-test")
    with live_service(exported_model, {"device": "cpu", "max_queue_wait_s": 60}) as live:
        cat = files(("cat.jpg", image_bytes("chelsea.jpg")))
        assert httpx.post(f"{live.url}/classify", files=cat).status_code == 200
        live.process.send_signal(signal.SIGTERM)  # the shutdown flushes the spans
        live.process.wait(30)
    exported = b"".join(received)
    for name in (b"xception-under-test", b"POST /classify", b"decode", b"queue wait", b"batch",
                 b"inference"):  # fmt: skip
        assert name in exported, name
