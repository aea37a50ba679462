"""The Open Inference Protocol (KServe v2) with the real ``tritonclient``, over ``xception-serve``.

No protocol code on the test side: tritonclient builds the JSON and binary requests and reads
the answers; every figure is compared with what ``/classify`` and ``/features`` answer for the
same images over the same server.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from artifact.card import ModelCard
from artifact.preprocess import Preprocessor
from bench.loadgen import ServiceProcess
from tests.service.conftest import files, image_bytes, live_service

NAMES = ("chelsea.jpg", "coffee.png", "horse.png")


@pytest.fixture(scope="module")
def server(exported_model: Path) -> Iterator[ServiceProcess]:
    settings = {"device": "cpu", "max_batch_size": 8, "max_batch_delay_ms": 20,
                "max_queue_wait_s": 60}  # fmt: skip
    with live_service(exported_model, settings) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: ServiceProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"127.0.0.1:{server.port}", concurrency=16)


@pytest.fixture(scope="module")
def expected(server: ServiceProcess) -> dict[str, dict]:
    """/features and /classify (top 5) for each image: the reference answers."""
    upload = files(*((n, image_bytes(n)) for n in NAMES))
    features = httpx.post(f"{server.url}/features", files=upload, timeout=120).json()
    classify = httpx.post(f"{server.url}/classify?top_k=5", files=upload, timeout=120).json()
    return {
        name: {"features": np.array(f["features"]), "top": c["predictions"]}
        for name, f, c in zip(NAMES, features["results"], classify["results"], strict=True)
    }


def card(exported_model: Path) -> ModelCard:
    return ModelCard.model_validate_json((exported_model / "model.json").read_text())


def bytes_input(binary: bool) -> triton.InferInput:
    data = [image_bytes(n) if binary else base64.b64encode(image_bytes(n)) for n in NAMES]
    tensor = triton.InferInput("image_bytes", [len(NAMES)], "BYTES")
    tensor.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)
    return tensor


def test_health_and_metadata(client: triton.InferenceServerClient, exported_model: Path) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("xception") and client.is_model_ready("xception", "1")
    assert not client.is_model_ready("xception", "2")
    server = client.get_server_metadata()
    assert {"binary_tensor_data", "classification"} <= set(server["extensions"])
    meta = client.get_model_metadata("xception")
    assert meta["platform"] == "onnx_onnxv1" and meta["versions"] == ["1"]
    shapes = {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"] + meta["outputs"]}
    assert shapes == {
        "image": ("UINT8", [-1, 299, 299, 3]),
        "image_bytes": ("BYTES", [-1]),
        "probabilities": ("FP32", [-1, card(exported_model).num_classes]),
        "features": ("FP32", [-1, 2048]),
    }


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_image_bytes_equal_the_multipart_answers(
    client: triton.InferenceServerClient, expected: dict[str, dict], binary: bool
) -> None:
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=5),
        triton.InferRequestedOutput("features", binary_data=binary),
    ]
    result = client.infer("xception", [bytes_input(binary)], outputs=outputs, request_id="r-1")
    assert result.get_response()["id"] == "r-1"
    features = result.as_numpy("features")
    classes = result.as_numpy("probabilities")
    assert features.shape == (3, 2048) and classes.shape == (3, 5)
    for name, vector, row in zip(NAMES, features, classes, strict=True):
        np.testing.assert_allclose(vector, expected[name]["features"], rtol=1e-5, atol=1e-6)
        entries = [(e.decode() if isinstance(e, bytes) else e).split(":", 2) for e in row]
        for (score, index, label), want in zip(entries, expected[name]["top"], strict=True):
            assert (int(index), label) == (want["index"], want["label"])
            assert abs(float(score) - want["score"]) <= 1e-5


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_pixels_equal_the_uploads(
    client: triton.InferenceServerClient,
    expected: dict[str, dict],
    exported_model: Path,
    binary: bool,
) -> None:
    """The ``image`` input is the ONNX input: pixels preprocessed as the card says."""
    preprocess = Preprocessor.for_card(card(exported_model), 40_000_000)
    pixels = np.stack([preprocess(image_bytes(n), n) for n in NAMES])
    tensor = triton.InferInput("image", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    # No outputs named: tritonclient asks for all of them, in binary.
    outputs = (
        None
        if binary
        else [
            triton.InferRequestedOutput(name, binary_data=False)
            for name in ("probabilities", "features")
        ]
    )
    result = client.infer("xception", [tensor], outputs=outputs)
    for name, vector in zip(NAMES, result.as_numpy("features"), strict=True):
        np.testing.assert_allclose(vector, expected[name]["features"], rtol=1e-5, atol=1e-6)
    assert result.as_numpy("probabilities").shape == (3, card(exported_model).num_classes)


def test_concurrent_requests_share_batches(
    client: triton.InferenceServerClient, server: ServiceProcess, expected: dict[str, dict]
) -> None:
    before = httpx.get(f"{server.url}/v1/models").json()["runtime"]["counters"]
    tensor = triton.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image_bytes("chelsea.jpg")], dtype=np.object_))
    pending = [client.async_infer("xception", [tensor]) for _ in range(16)]
    for request in pending:
        np.testing.assert_allclose(
            request.get_result().as_numpy("features")[0],
            expected["chelsea.jpg"]["features"],
            rtol=1e-5,
            atol=1e-6,
        )
    after = httpx.get(f"{server.url}/v1/models").json()["runtime"]["counters"]
    assert after["images"] - before["images"] == 16
    assert after["batches"] - before["batches"] < 16  # some batch held more than one request


@pytest.mark.parametrize(
    ("model", "shape", "datatype", "message"),
    [
        ("xception", [1, 10, 10, 3], "UINT8", "must be UINT8 [N, 299, 299, 3]"),
        ("xception", [1, 299, 299, 3], "FP32", "must be UINT8 [N, 299, 299, 3]"),
        ("resnet", [1, 299, 299, 3], "UINT8", "model 'resnet' is not served"),
    ],
    ids=["shape", "datatype", "model"],
)
def test_bad_requests_raise_the_protocol_error(
    client: triton.InferenceServerClient, model: str, shape: list[int], datatype: str, message: str
) -> None:
    tensor = triton.InferInput("image", shape, datatype)
    dtype = np.uint8 if datatype == "UINT8" else np.float32
    tensor.set_data_from_numpy(np.zeros(shape, dtype=dtype))
    with pytest.raises(InferenceServerException) as raised:
        client.infer(model, [tensor])
    assert message in raised.value.message()
    assert raised.value.status() == ("404" if model != "xception" else "400")


def test_undecodable_bytes_and_bad_base64(client: triton.InferenceServerClient) -> None:
    broken = triton.InferInput("image_bytes", [1], "BYTES")
    broken.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="image_bytes\\[0\\]: not an image"):
        client.infer("xception", [broken])
    text = triton.InferInput("image_bytes", [1], "BYTES")
    text.set_data_from_numpy(np.array(["%%% not base64"], dtype=np.object_), binary_data=False)
    with pytest.raises(InferenceServerException, match="element 0: not valid base64"):
        client.infer("xception", [text])


def test_request_timeout_is_in_microseconds(client: triton.InferenceServerClient) -> None:
    """``parameters.timeout`` is µs: 50,000 µs (50 ms) cannot be met, so the protocol's 504
    names 0.05 s; 60,000,000 µs (a minute) is met. Read as ms, s or ns, one of them flips."""
    with pytest.raises(InferenceServerException) as raised:
        client.infer("xception", [bytes_input(binary=True)], timeout=50_000)
    assert raised.value.status() == "504"
    assert "no result within 0.05s" in raised.value.message()
    result = client.infer("xception", [bytes_input(binary=True)], timeout=60_000_000)
    assert result.as_numpy("features").shape == (3, 2048)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_outputs_come_back_in_the_form_asked_for(
    server: ServiceProcess, client: triton.InferenceServerClient, binary: bool
) -> None:
    """tritonclient decodes either form silently, so the wire itself is read: binary outputs
    are raw bytes after the JSON header (``binary_data_size``, no ``data``), JSON ones are
    ``data`` lists, and ``Inference-Header-Content-Length`` is sent only with binary ones."""
    outputs = [
        triton.InferRequestedOutput(n, binary_data=binary) for n in ("features", "probabilities")
    ]
    result = client.infer("xception", [bytes_input(binary=True)], outputs=outputs)
    for name in ("features", "probabilities"):
        output = result.get_output(name)
        assert ("data" in output) is not binary
        assert ("binary_data_size" in output.get("parameters", {})) is binary
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [bytes_input(binary=True)], outputs=outputs
    )
    headers = {"Inference-Header-Content-Length": str(json_size)} if json_size else {}
    raw = httpx.post(f"{server.url}/v2/models/xception/infer", content=body, headers=headers,
                     timeout=120)  # fmt: skip
    assert raw.status_code == 200
    header_length = raw.headers.get("inference-header-content-length")
    assert (header_length is not None) is binary
    if binary:
        assert header_length is not None
        head = json.loads(raw.content[: int(header_length)])
        sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
        assert len(raw.content) == int(header_length) + sum(sizes)
        assert sorted(sizes) == sorted(
            [3 * 2048 * 4, 3 * result.as_numpy("probabilities").shape[1] * 4]
        )
    else:
        assert len(json.loads(raw.content)["outputs"][0]["data"]) > 0


@pytest.mark.parametrize(
    ("request_id", "echoed"),
    [("trace-7", True), ("a\r\nX-Injected: 1", False), ("x" * 500, False)],
    ids=["sane", "header-injection", "too-long"],
)
def test_the_v2_request_id_reaches_headers_only_when_sane(
    server: ServiceProcess, request_id: str, echoed: bool
) -> None:
    """A v2 request's ``id`` becomes its X-Request-ID (and its log lines' id) only if it is
    safe there; the JSON body echoes it as the protocol says, escaped."""
    body = {
        "id": request_id,
        "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                    "data": [base64.b64encode(image_bytes("chelsea.jpg")).decode()]}],
        "outputs": [{"name": "features"}],
    }  # fmt: skip
    answer = httpx.post(f"{server.url}/v2/models/xception/infer", json=body, timeout=120)
    assert answer.status_code == 200
    assert answer.json()["id"] == request_id
    assert "x-injected" not in answer.headers
    header = answer.headers["x-request-id"]
    assert (header == request_id) is echoed
    assert "\n" not in header and "\r" not in header and len(header) <= 128


def test_overload_is_refused_in_the_protocols_error_body(exported_model: Path) -> None:
    """Admission applies to /v2 infer too, answered as the protocol expects."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.core.admission import Ticket
    from tests.service.conftest import make_settings, served, wait_ready

    with TestClient(create_app(make_settings(exported_model, max_queue_wait_s=1.5))) as app:
        wait_ready(app)
        service = served(app)
        service.batcher.stats.seconds_per_image = 1.5
        held = [
            service.admission.admit(),
            service.admission.admit(),
        ]  # two requests whose bodies are arriving
        assert all(isinstance(ticket, Ticket) for ticket in held)
        encoded = base64.b64encode(image_bytes("chelsea.jpg")).decode()
        tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [encoded]}
        body = {"inputs": [tensor]}
        response = app.post("/v2/models/xception/infer", json=body)
        assert response.status_code == 503 and response.headers["Retry-After"] == "3"
        assert "XCEPTION_MAX_QUEUE_WAIT_S" in response.json()["error"]  # a string, not an object
        for ticket in held:
            ticket.release()
        answered = app.post("/v2/models/xception/infer", json=body)
        assert answered.status_code == 200
        assert [o["name"] for o in answered.json()["outputs"]] == ["probabilities", "features"]


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        ({"data": [[1, 2], [3]], "shape": [1, 299, 299, 3]}, "the shape needs 268203"),
        ({"data": [[1, 2], [3, 4, 5]], "shape": [2]}, "must hold numbers"),
        ({"data": [256] * 4, "shape": [4]}, "outside the UINT8 range"),
        ({"data": ["x"], "shape": [1]}, "must hold numbers"),
        ({"data": [0], "shape": [1, 2**40, 2**40]}, "the shape needs"),
    ],
    ids=["ragged", "ragged-same-count", "out-of-range", "not-numbers", "absurd-shape"],
)
def test_malformed_json_tensors_are_400(
    server: ServiceProcess, tensor: dict, fragment: str
) -> None:
    """What tritonclient would never send, sent raw: still the protocol's 400, never a 500."""
    body = {"inputs": [{"name": "image", "datatype": "UINT8", **tensor}]}
    response = httpx.post(f"{server.url}/v2/models/xception/infer", json=body, timeout=60)
    assert response.status_code == 400 and fragment in response.json()["error"], response.text


def test_classification_above_the_class_count_is_refused_as_on_classify(
    client: triton.InferenceServerClient, server: ServiceProcess
) -> None:
    """One rule for top-k on every protocol: k above the class count is 422, with the same
    message as /classify's ``top_k`` (not a 400 here and a 422 there)."""
    too_many = 1001  # the model has ImageNet's 1000 classes
    output = triton.InferRequestedOutput("probabilities", class_count=too_many)
    with pytest.raises(InferenceServerException) as raised:
        client.infer("xception", [bytes_input(binary=True)], outputs=[output])
    assert raised.value.status() == "422"
    upload = files(("cat.jpg", image_bytes("chelsea.jpg")))
    classify = httpx.post(f"{server.url}/classify?top_k={too_many}", files=upload, timeout=60)
    assert classify.status_code == 422
    assert classify.json()["error"]["message"] == raised.value.message()


def _raw(header: dict | bytes, extra: bytes = b"", length: str | None = None) -> tuple[bytes, dict]:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    headers: dict[str, str | bytes] = {"Content-Type": "application/octet-stream"}
    if length is not None:  # as bytes: httpx would refuse to send a non-ASCII str
        headers["Inference-Header-Content-Length"] = length.encode("latin-1")
    return body + extra, headers


PIXELS = {"name": "image", "datatype": "UINT8", "shape": [1, 299, 299, 3]}


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        _raw({"inputs": []}, length="²"),  # str.isdigit() says yes, int() says no
        _raw({"inputs": []}, length="9" * 5000),  # past Python's int-from-string limit
        _raw(b'{"inputs": ' + b"[" * 100_000),  # deeper than the recursion limit
        _raw(b'{"inputs": [], "id": ' + b"7" * 5000 + b"}"),  # a JSON int past the limit
        _raw({"inputs": [PIXELS], "parameters": {"timeout": 10**400}}),  # overflows a float
        _raw({"inputs": [PIXELS], "parameters": {"timeout": True}}),
        _raw({"inputs": [{**PIXELS, "parameters": {"binary_data_size": True}}]}, b"x"),
        _raw({"inputs": [{**PIXELS, "shape": [0, 299, 299, 3], "data": []}]}),  # zero images
        _raw({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [0], "data": []}]}),
        _raw({"inputs": [{**PIXELS, "shape": [True, 299, 299, 3], "data": [0] * 268203}]}),
        _raw({"inputs": [], "outputs": 4.0752010928371096e16}),  # found by Schemathesis: a 500
    ],
    ids=["superscript-length", "long-length", "deep-json", "huge-int", "float-overflow",
         "bool-timeout", "bool-size", "zero-pixels", "zero-bytes", "bool-dimension",
         "outputs-a-number"],
)  # fmt: skip
def test_numbers_and_structure_of_any_kind_are_400(
    server: ServiceProcess, body: bytes, headers: dict
) -> None:
    """What Python's own parsers choke on is the protocol's 400, never a 500."""
    url = f"{server.url}/v2/models/xception/infer"
    response = httpx.post(url, content=body, headers=headers, timeout=60)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)


def test_a_header_length_equal_to_the_body_is_a_json_only_request(server: ServiceProcess) -> None:
    """``Inference-Header-Content-Length`` may cover the whole body (JSON only, no binary
    section): served. One byte more than the body is the 400 — the bound is exact."""
    body = json.dumps({"inputs": [{
        "name": "image_bytes", "shape": [1], "datatype": "BYTES",
        "data": [base64.b64encode(image_bytes("chelsea.jpg")).decode()],
    }]}).encode()  # fmt: skip
    url = f"{server.url}/v2/models/xception/infer"
    for length, status in ((len(body), 200), (len(body) + 1, 400), (len(body) - 1, 400)):
        headers = {"Inference-Header-Content-Length": str(length)}
        response = httpx.post(url, content=body, headers=headers, timeout=60)
        assert response.status_code == status, (length, len(body), response.text)
    assert "is not a length within the" in httpx.post(
        url, content=body, headers={"Inference-Header-Content-Length": str(len(body) + 1)},
        timeout=60,
    ).json()["error"]  # fmt: skip


def test_the_schema_asks_for_an_input_as_the_server_does(server: ServiceProcess) -> None:
    """``{"inputs": []}`` is 400 (nothing to infer), and both infer paths' OpenAPI say so
    (``minItems: 1``): Schemathesis's positive_data_acceptance found the schema allowing it."""
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["inputs"]["minItems"] == 1, path
    empty = httpx.post(f"{server.url}/v2/models/xception/infer", json={"inputs": []})
    assert empty.status_code == 400, empty.text
