"""Validation that costs no more than the input (issue 34, class 3): every protocol counts a
request's images against ``XCEPTION_MAX_FILES`` before it builds an object or an error per
element, and a requested output is answered once. A real server, real HTTP.

The old code answered most of these only after seconds of a stalled event loop and
hundreds of MB (figures in docs/reliability.md); the bound below is ten times what they take
now and a fraction of what they took.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.loadgen import ServiceProcess
from tests.service.conftest import live_service

MAX_FILES = 16
SETTINGS = {"device": "cpu", "max_files": MAX_FILES}
QUICK_S = 1.5  # the old code: 3.4 s to 18 s on the same inputs


@pytest.fixture(scope="module")
def server(exported_model: Path) -> Iterator[ServiceProcess]:
    with live_service(exported_model, SETTINGS) as live:
        yield live


def post(server: ServiceProcess, path: str, **kwargs: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(f"{server.url}{path}", timeout=60, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/classify", {"images": [0] * 250_000}),  # 0.5 MB: 250,000 validation errors
        ("/v1/embeddings", {"model": "xception", "input": [0] * 500_000}),  # 1 MB
    ],
    ids=["classify-json", "embeddings"],
)
def test_a_json_list_past_max_files_is_413_before_its_elements(
    server: ServiceProcess, path: str, body: dict
) -> None:
    response, took = post(server, path, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_many_files"
    assert f"the limit is {MAX_FILES}" in response.json()["error"]["message"]
    assert took < QUICK_S


def test_embeddings_of_no_image_is_refused(server: ServiceProcess) -> None:
    response, _ = post(server, "/v1/embeddings", json={"model": "xception", "input": []})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_parameter"
    assert "input" in response.json()["error"]["message"]


def test_embeddings_errors_are_summarised_from_at_most_max_files_inputs(
    server: ServiceProcess,
) -> None:
    response, _ = post(server, "/v1/embeddings", json={"model": "xception", "input": [0] * 16})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "more" in message and len(message) < 1000, message


def bytes_request(elements: int, shape: int) -> tuple[bytes, dict[str, str]]:
    """A binary v2 request: ``elements`` zero-length BYTES elements under shape [shape]."""
    header = json.dumps({
        "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [shape],
                    "parameters": {"binary_data_size": 4 * elements}}],
    }).encode()  # fmt: skip
    body = header + struct.pack("<I", 0) * elements
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(header))}  # fmt: skip
    return body, headers


@pytest.mark.parametrize(
    ("shape", "status", "fragment"),
    [
        (4_900_000, 413, "4,900,000 images in one request"),  # the shape says so: 413 at once
        (1, 400, "more than 1 elements for a shape of 1"),  # the shape lies: read to 2, then 400
    ],
    ids=["declared", "undeclared"],
)
def test_v2_bytes_elements_are_counted_from_the_shape(
    server: ServiceProcess, shape: int, status: int, fragment: str
) -> None:
    body, headers = bytes_request(4_900_000, shape)  # 19.6 MB: within the 20 MB body limit
    response, took = post(server, "/v2/models/xception/infer", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert took < QUICK_S * 2  # the body itself is 20 MB; the old code: 18 s


def test_v2_an_output_requested_twice_is_refused(server: ServiceProcess) -> None:
    pixels = {"name": "image", "datatype": "UINT8", "shape": [1, 299, 299, 3],
              "parameters": {"binary_data_size": 299 * 299 * 3}}  # fmt: skip
    header = json.dumps(
        {"inputs": [pixels], "outputs": [{"name": "features"}] * 8_000}
    ).encode()  # 176 kB that asked for a 359 MB answer
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(header))}  # fmt: skip
    body = header + bytes(299 * 299 * 3)
    response, _ = post(server, "/v2/models/xception/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text[:300]
    assert "'features' is requested more than once" in response.json()["error"]
