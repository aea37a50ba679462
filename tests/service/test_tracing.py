"""A request can be followed: X-Request-ID on every answer, the same id on its log lines."""

from __future__ import annotations

import json
import signal
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
        output = live.process.stderr.read()  # type: ignore[union-attr]
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    access = {r["request_id"]: r["message"] for r in records if r["logger"] == "uvicorn.access"}
    assert "POST /classify" in access["find-me"]
    assert "POST /v2/models/xception/infer" in access["v2-id-7"]
