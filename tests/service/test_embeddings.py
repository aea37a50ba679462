"""OpenAI-style image embeddings with the real ``openai`` client, against ``xception-serve``."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from bench.loadgen import ServiceProcess
from tests.service.conftest import files, image_bytes, live_service

NAMES = ("chelsea.jpg", "coffee.png")
MIME = {"jpg": "image/jpeg", "png": "image/png"}


def data_uri(name: str) -> str:
    return (
        f"data:{MIME[name.rsplit('.', 1)[1]]};base64,{base64.b64encode(image_bytes(name)).decode()}"
    )


@pytest.fixture(scope="module")
def images_host() -> Iterator[str]:
    """A local HTTP server holding the test images: the only allowed URL host."""
    folder = str(Path(__file__).resolve().parents[1] / "data")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=folder, **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def server(exported_model: Path, images_host: str) -> Iterator[ServiceProcess]:
    settings = {"device": "cpu", "url_hosts": "127.0.0.1", "max_queue_wait_s": 60}
    with live_service(exported_model, settings) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: ServiceProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def expected(server: ServiceProcess) -> list[np.ndarray]:
    upload = files(*((n, image_bytes(n)) for n in NAMES))
    answer = httpx.post(f"{server.url}/features?normalize=true", files=upload, timeout=120)
    return [np.array(r["features"]) for r in answer.json()["results"]]


@pytest.mark.parametrize("encoding", ["default", "float"])
def test_openai_client_gets_the_normalized_features(
    client: openai.OpenAI, expected: list[np.ndarray], encoding: str
) -> None:
    # The client's default asks for base64 and decodes the float32 bytes itself.
    extra = {} if encoding == "default" else {"encoding_format": "float"}
    response = client.embeddings.create(
        model="xception",
        input=[data_uri(n) for n in NAMES],
        **extra,  # type: ignore[arg-type]
    )
    assert response.model == "xception/1" and [d.index for d in response.data] == [0, 1]
    for item, want in zip(response.data, expected, strict=True):
        vector = np.array(item.embedding)
        assert vector.shape == (2048,)
        np.testing.assert_allclose(vector, want, rtol=1e-5, atol=1e-6)


def test_bare_base64_and_allowed_urls(
    client: openai.OpenAI, expected: list[np.ndarray], images_host: str
) -> None:
    bare = base64.b64encode(image_bytes("chelsea.jpg")).decode()
    url = f"{images_host}/coffee.png"
    response = client.embeddings.create(model="xception", input=[bare, url])
    for item, want in zip(response.data, expected, strict=True):
        np.testing.assert_allclose(np.array(item.embedding), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("inputs", "status", "fragment"),
    [
        (["%%% not base64"], 400, "input[0]: not valid base64"),
        ([data_uri("chelsea.jpg"), "data:text/plain;base64,aGk="], 415, "input[1]"),
        (["http://example.com/cat.jpg"], 400, "not an allowed image host"),
        (["file:///etc/passwd"], 400, "input[0]: not valid base64"),
    ],
    ids=["bad-base64", "text-data-uri", "other-host", "file-url"],
)
def test_bad_inputs_name_their_index(
    client: openai.OpenAI, inputs: list[str], status: int, fragment: str
) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        client.embeddings.create(model="xception", input=inputs)
    assert raised.value.status_code == status
    assert fragment in raised.value.response.text


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="is not served; served: xception"):
        client.embeddings.create(model="text-embedding-3-small", input=[data_uri("coffee.png")])


def test_urls_are_refused_unless_hosts_are_listed(exported_model: Path, images_host: str) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.conftest import make_settings, wait_ready

    with TestClient(create_app(make_settings(exported_model))) as app:
        wait_ready(app)
        body = {"model": "xception", "input": [f"{images_host}/coffee.png"]}
        response = app.post("/v1/embeddings", json=body)
        assert response.status_code == 400
        assert "XCEPTION_URL_HOSTS is empty" in response.json()["error"]["message"]
