"""Hypothesis where the OpenAPI schema cannot reach: the v2 binary tensor extension (header
lengths, ``binary_data_size``, BYTES length prefixes, shapes, datatypes), multipart bodies,
and image bytes (real files truncated, bit-flipped, with chunks overwritten), and raw HTTP/1.1
framing after the headers (chunk trailers of any size, Upgrade requests with a body). Against the
live service with the default settings; the property: never a 5xx, always the error body of
the path's protocol, and the server still answers a normal request afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, reject, seed, settings
from hypothesis import strategies as st

from bench.loadgen import ServiceProcess
from tests.fuzz.conftest import SEED
from tests.service.conftest import image_bytes

DATA = Path(__file__).resolve().parents[1] / "data"
REAL_FILES = sorted(p.name for p in DATA.iterdir() if p.is_file())
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,  # the seed, not a local database, decides what runs
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def post(service: ServiceProcess, path: str, **kwargs: object) -> httpx.Response:
    try:
        return httpx.post(f"{service.url}{path}", timeout=60, **kwargs)  # type: ignore[arg-type]
    except httpx.LocalProtocolError:  # a header value httpx itself will not send
        reject()
        raise


# Answered by the HTTP parser before a request exists (no path yet): always the envelope.
BELOW_THE_APP = {"http_error", "headers_too_large", "request_timeout"}


def assert_answered(response: httpx.Response, v2: bool) -> None:
    assert response.status_code < 500, response.text[:2000]
    if response.status_code >= 400:
        error = response.json()["error"]
        if isinstance(error, dict) and error.get("code") in BELOW_THE_APP:
            return
        assert isinstance(error, str) if v2 else set(error) == {"code", "message"}, error


def still_serving(service: ServiceProcess) -> None:
    files = {"file": ("cat.jpg", image_bytes("chelsea.jpg"), "image/jpeg")}
    assert post(service, "/classify?top_k=1", files=files).status_code == 200


# -- the v2 binary tensor extension ---------------------------------------------------------

DATATYPES = st.sampled_from(["UINT8", "FP32", "BYTES", "INT64", "uint8", "", "FP16"])
SHAPES = st.lists(st.integers(min_value=-2, max_value=400), min_size=0, max_size=5) | st.lists(
    st.integers(0, 10**7), min_size=1, max_size=2
)  # element counts past XCEPTION_MAX_FILES and past the body


@st.composite
def bytes_elements(draw: st.DrawFn) -> bytes:
    """BYTES elements: a 4-byte little-endian length, then the bytes; lengths may lie."""
    out = b""
    for _ in range(draw(st.integers(0, 4))):
        data = draw(st.sampled_from([b"", image_bytes("coffee.png")[:200], b"\x00" * 7]))
        length = draw(st.one_of(st.just(len(data)), st.integers(0, 2**32 - 1)))
        out += struct.pack("<I", length) + data
    return out


@st.composite
def v2_binary_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    binary = draw(st.one_of(bytes_elements(), st.binary(max_size=600)))
    size = draw(st.one_of(st.just(len(binary)), st.integers(-5, 10**6), st.none()))
    tensor: dict[str, object] = {
        "name": draw(st.sampled_from(["image", "image_bytes", "other"])),
        "datatype": draw(DATATYPES),
        "shape": draw(SHAPES),
    }
    if size is not None:
        tensor["parameters"] = {"binary_data_size": size}
    header: dict[str, object] = {"inputs": [tensor]}
    if draw(st.booleans()):
        header["outputs"] = [
            {
                "name": "probabilities",
                "parameters": {
                    "classification": draw(st.integers(-1, 2000)),
                    "binary_data": draw(st.booleans()),
                },
            }
        ] + [{"name": "features"}] * draw(st.integers(0, 3))  # repeated outputs
    raw = json.dumps(header).encode()
    length = draw(
        st.one_of(
            st.just(str(len(raw))),
            st.integers(-3, len(raw) + len(binary) + 3).map(str),
            st.text(max_size=8),
        )
    )
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": length,
    }
    return raw + binary, headers


@seed(SEED)
@FUZZ
@given(request=v2_binary_requests())
def test_v2_binary_requests_never_fail_the_server(
    default_service: ServiceProcess, request: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = request
    encoded = {k: v.encode("utf-8") for k, v in headers.items()}  # any text, sent as bytes
    response = post(default_service, "/v2/models/xception/infer", content=body, headers=encoded)
    assert_answered(response, v2=True)


# -- multipart bodies and image bytes -------------------------------------------------------


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real file, then truncated, bit-flipped, or with a chunk overwritten."""
    data = bytearray((DATA / draw(st.sampled_from(REAL_FILES))).read_bytes())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "header"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=64))
            data[at : at + len(chunk)] = chunk
        elif data:  # the header: where sizes, modes and offsets live
            offset = draw(st.integers(0, min(64, len(data) - 1)))
            data[offset] = draw(st.integers(0, 255))
    return bytes(data)


@seed(SEED)
@FUZZ
@given(image=mutated_images(), endpoint=st.sampled_from(["/classify", "/features"]))
def test_mutated_images_never_fail_the_server(
    default_service: ServiceProcess, image: bytes, endpoint: str
) -> None:
    files = {"file": ("mutated", image, "application/octet-stream")}
    assert_answered(post(default_service, endpoint, files=files), v2=False)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    boundary = draw(st.sampled_from(["b", "x" * 70, 'weird"=;', ""]))
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["file", "files", "", "fi\x00le"]))
        filename = draw(st.sampled_from(['; filename="a.jpg"', "", '; filename="../../x"']))
        payload = draw(st.one_of(st.binary(max_size=300), st.just(image_bytes("coffee.png"))))
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n"
            .encode("latin-1", "replace") + payload + b"\r\n"
        )  # fmt: skip
    ending = draw(st.sampled_from([f"--{boundary}--\r\n".encode("latin-1"), b"", b"--"]))
    header = draw(
        st.sampled_from(
            [f"multipart/form-data; boundary={boundary}", "multipart/form-data",
             "multipart/form-data; boundary="]
        )
    )  # fmt: skip
    return b"".join(parts) + ending, {"Content-Type": header}


@seed(SEED)
@FUZZ
@given(request=multipart_bodies())
def test_multipart_bodies_never_fail_the_server(
    default_service: ServiceProcess, request: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = request
    encoded = {k: v.encode("latin-1", "replace") for k, v in headers.items()}
    assert_answered(post(default_service, "/classify", content=body, headers=encoded), v2=False)


@st.composite
def embeddings_bodies(draw: st.DrawFn) -> bytes:
    """The OpenAI body: the model right or not, inputs base64, data URIs or junk."""
    item = st.one_of(
        st.just("data:image/png;base64," + base64.b64encode(image_bytes("coffee.png")).decode()),
        st.text(max_size=40),
        st.just("data:text/plain;base64,aGk="),
        st.just("http://localhost/x.png"),
    )  # fmt: skip
    body = {
        "model": draw(st.sampled_from(["xception", "xception/1", "xception/9", "nope", ""])),
        "input": draw(st.one_of(item, st.lists(item, max_size=20))),
        "encoding_format": draw(st.sampled_from(["float", "base64", "hex"])),
    }
    return json.dumps(body).encode()


@seed(SEED)
@FUZZ
@given(body=embeddings_bodies())
def test_embeddings_bodies_never_fail_the_server(
    default_service: ServiceProcess, body: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    assert_answered(post(default_service, "/v1/embeddings", content=body, headers=headers), False)


def test_the_server_still_serves_after_the_fuzzers(default_service: ServiceProcess) -> None:
    still_serving(default_service)


# -- the HTTP framing after the headers: trailers and upgrades --------------------------------


@st.composite
def framed_requests(draw: st.DrawFn) -> bytes:
    """A /classify request sent raw: chunked with trailers of any size, or asking for an
    upgrade (WebSocket, h2c) with its body, optionally with a request pipelined after it."""
    part = image_bytes("coffee.png")
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + part + b"\r\n--b--\r\n")  # fmt: skip
    head = [
        b"POST /classify HTTP/1.1",
        b"Host: x",
        b"Content-Type: multipart/form-data; boundary=b",
    ]
    upgrade = draw(st.sampled_from([None, b"websocket", b"h2c", b"foo/1"]))
    if upgrade is not None:
        head += [b"Connection: Upgrade", b"Upgrade: " + upgrade]
    if draw(st.booleans()):  # chunked, then trailers
        size = draw(st.integers(1, len(body)))
        chunks = b"".join(b"%x\r\n" % len(body[i : i + size]) + body[i : i + size] + b"\r\n"
                          for i in range(0, len(body), size))  # fmt: skip
        fields = draw(st.integers(0, 20_000))
        value = b"v" * draw(st.integers(0, 100_000))
        trailers = b"".join(
            b"x-t%d: %s\r\n" % (i, value if i == 0 else b"1") for i in range(fields)
        )
        message = b"\r\n".join([*head, b"Transfer-Encoding: chunked", b"", chunks + b"0\r\n"])
        message += trailers + b"\r\n"
    else:
        message = b"\r\n".join([*head, b"Content-Length: %d" % len(body), b"", body])
    if draw(st.booleans()):
        message += b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    return message


@seed(SEED)
@settings(FUZZ, max_examples=30)
@given(message=framed_requests())
def test_trailers_and_upgrades_are_answered_in_the_envelope(
    default_service: ServiceProcess, message: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", default_service.port), timeout=30) as sock:
        # Refused mid-send (trailers past the limit): the answer is there already.
        with contextlib.suppress(OSError):
            sock.sendall(message)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"closed without an answer after {answer[:200]!r}"
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (200, 431), answer[:500]  # answered as HTTP/1.1, or its framing refused
    assert b"application/json" in answer.partition(b"\r\n\r\n")[0].lower()
    still_serving(default_service)
