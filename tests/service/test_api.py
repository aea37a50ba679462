"""The HTTP API over the real app, model and runtime: results, order, errors, limits."""

from __future__ import annotations

import base64
import hmac
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from artifact.card import ModelCard
from artifact.preprocess import Preprocessor
from service.app import create_app
from tests.artifact.test_preprocess import encode, png_header_only
from tests.service.conftest import files, image_bytes, make_settings, served, wait_ready


class ResponseLike(Protocol):
    """httpx's and Starlette TestClient's responses (different classes, same shape)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def assert_envelope(response: ResponseLike, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.fixture(scope="module")
def direct(exported_model: Path) -> tuple[Preprocessor, ort.InferenceSession]:
    """The same preprocessing and model file, run without the service or batching."""
    card = ModelCard.model_validate_json((exported_model / "model.json").read_text())
    session = ort.InferenceSession(
        str(exported_model / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return Preprocessor.for_card(card, max_pixels=10**9), session


@pytest.mark.parametrize("name", ["chelsea.jpg", "coffee.png"])
def test_classify_matches_onnx_runtime_directly(
    client: TestClient, direct: tuple[Preprocessor, ort.InferenceSession], name: str
) -> None:
    response = client.post("/classify", files=files((name, image_bytes(name))))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "xception", "version": "1"}
    (result,) = body["results"]
    assert result["filename"] == name
    predictions = result["predictions"]
    assert len(predictions) == 5
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)

    preprocess, session = direct
    probabilities = session.run(None, {"image": preprocess(image_bytes(name))[None]})[0][0]
    want = np.argsort(-probabilities, kind="stable")[:5]
    assert [p["index"] for p in predictions] == want.tolist()
    np.testing.assert_allclose(scores, probabilities[want], rtol=1e-5)
    labels = client.get("/v1/models").json()["card"]["labels"]
    assert [p["label"] for p in predictions] == [labels[i] for i in want]


def test_top_k_bounds(client: TestClient) -> None:
    upload = files(("cat.jpg", image_bytes("chelsea.jpg")))
    ok = client.post("/classify?top_k=1000", files=upload)
    assert ok.status_code == 200 and len(ok.json()["results"][0]["predictions"]) == 1000
    for bad in ("0", "1001", "abc"):
        assert_envelope(
            client.post(f"/classify?top_k={bad}", files=upload), 422, "invalid_parameter"
        )


def test_features(client: TestClient, direct: tuple[Preprocessor, ort.InferenceSession]) -> None:
    upload = files(("cat.jpg", image_bytes("chelsea.jpg")))
    raw = client.post("/features", files=upload).json()
    assert raw["dim"] == 2048
    vector = np.array(raw["results"][0]["features"])
    assert vector.shape == (2048,) and np.isfinite(vector).all()
    preprocess, session = direct
    want = session.run(None, {"image": preprocess(image_bytes("chelsea.jpg"))[None]})[1][0]
    np.testing.assert_allclose(vector, want, rtol=1e-5, atol=1e-9)

    unit = np.array(
        client.post("/features?normalize=true", files=upload).json()["results"][0]["features"]
    )
    assert np.linalg.norm(unit) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(unit, vector / np.linalg.norm(vector), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("endpoint", ["/features", "/classify?top_k=3"])
def test_multi_file_request_keeps_upload_order(client: TestClient, endpoint: str) -> None:
    """Every output of a shared batch goes to its own image: each result of a 5-image
    request equals that image's result alone (features, and probabilities separately)."""
    names = ["coffee.png", "chelsea.jpg", "horse.png", "chessboard_GRAY.png", "chelsea.jpg"]
    response = client.post(endpoint, files=files(*((n, image_bytes(n)) for n in names)))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["filename"] for r in results] == names
    single = {
        n: client.post(endpoint, files=files((n, image_bytes(n)))).json()["results"][0]
        for n in set(names)
    }
    for result in results:
        alone = single[result["filename"]]
        if "features" in result:
            np.testing.assert_allclose(result["features"], alone["features"], rtol=1e-5, atol=1e-9)
        else:
            assert [p["index"] for p in result["predictions"]] == [
                p["index"] for p in alone["predictions"]
            ]
            np.testing.assert_allclose(
                [p["score"] for p in result["predictions"]],
                [p["score"] for p in alone["predictions"]],
                rtol=1e-5,
            )


def odd_uploads() -> list[tuple[str, bytes, int, str | None]]:
    """(name, bytes, expected status, expected error code) for every kind of odd input."""
    rgba = Image.new("RGBA", (50, 40), (10, 20, 30, 128))
    palette = Image.new("RGB", (50, 40), (200, 10, 10)).convert("P")
    sixteen = Image.fromarray(np.full((40, 50), 40000, dtype=np.uint16))
    stored = Image.new("RGB", (60, 40), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 8
    return [
        ("empty.jpg", b"", 400, "empty_file"),
        ("notes.txt", b"hello, I am text\n", 415, "unsupported_media_type"),
        ("truncated.jpg", image_bytes("chelsea.jpg")[:4000], 400, "invalid_image"),
        ("bomb.png", png_header_only(100_000, 100_000), 413, "image_too_large"),
        ("cmyk.jpg", encode(Image.new("CMYK", (50, 40), (0, 50, 100, 0)), "JPEG"), 200, None),
        ("sixteen.png", encode(sixteen, "PNG"), 200, None),
        ("rgba.png", encode(rgba, "PNG"), 200, None),
        ("palette.png", encode(palette, "PNG"), 200, None),
        ("animated.gif", image_bytes("no_time_for_that_tiny.gif"), 200, None),
        ("gray.png", image_bytes("chessboard_GRAY.png"), 200, None),
        ("rotated.jpg", encode(stored, "JPEG", exif=exif.tobytes()), 200, None),
        ("multipage_rgb.tif", image_bytes("multipage_rgb.tif"), 400, "invalid_image"),
    ]


@pytest.mark.parametrize(
    ("name", "data", "status", "code"), odd_uploads(), ids=[u[0] for u in odd_uploads()]
)
def test_odd_inputs_get_200_or_a_clear_4xx(
    client: TestClient, name: str, data: bytes, status: int, code: str | None
) -> None:
    response = client.post("/classify", files=files((name, data)))
    if code is None:
        assert response.status_code == 200, response.text
        assert len(response.json()["results"][0]["predictions"]) == 5
    else:
        assert_envelope(response, status, code)
        assert name in response.json()["error"]["message"]
    # ... and the server still answers a good request afterwards.
    assert (
        client.post("/classify", files=files(("ok.jpg", image_bytes("chelsea.jpg")))).status_code
        == 200
    )


def test_request_without_file_part(client: TestClient) -> None:
    assert_envelope(client.post("/classify"), 422, "invalid_parameter")
    other = client.post("/classify", files=[("other", ("a.jpg", image_bytes("chelsea.jpg")))])
    assert_envelope(other, 422, "invalid_parameter")
    assert "no part named 'file'" in other.json()["error"]["message"]
    form = client.post("/classify", data={"other": "x"})  # urlencoded: cannot carry files
    assert_envelope(form, 415, "unsupported_media_type")


def test_too_many_files(client: TestClient) -> None:
    upload = files(*[(f"{i}.png", image_bytes("chessboard_GRAY.png")) for i in range(9)])
    assert_envelope(client.post("/classify", files=upload), 413, "too_many_files")


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_envelope(client.get("/nope"), 404, "not_found")
    assert_envelope(client.get("/classify"), 405, "method_not_allowed")


def test_upload_size_limit(exported_model: Path) -> None:
    settings = make_settings(exported_model, max_upload_mb=0.05)
    with TestClient(create_app(settings)) as small:
        wait_ready(small)
        big = files(("big.png", io.BytesIO(b"\0" * 100_000).getvalue()))
        assert_envelope(small.post("/classify", files=big), 413, "upload_too_large")

        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield b"x" * 10_000

        chunked = small.post(
            "/classify",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert_envelope(chunked, 413, "upload_too_large")
        assert (
            small.post("/classify", files=files(("ok.jpg", image_bytes("chelsea.jpg")))).status_code
            == 200
        )


def test_api_key(exported_model: Path) -> None:
    with TestClient(create_app(make_settings(exported_model, api_key="s3cret"))) as secured:
        wait_ready(secured)
        upload = files(("cat.jpg", image_bytes("chelsea.jpg")))
        assert_envelope(secured.post("/classify", files=upload), 401, "unauthorized")
        wrong = {"Authorization": "Bearer nope"}
        assert_envelope(secured.post("/classify", files=upload, headers=wrong), 401, "unauthorized")
        right = {"Authorization": "Bearer s3cret"}
        assert secured.post("/classify", files=upload, headers=right).status_code == 200
        assert secured.get("/healthz").status_code == 200  # probes stay open
        assert secured.get("/v1/models").status_code == 401
        # Authenticated before routed: without the key, nothing tells which models exist.
        for path in ("/classify?model=nope", "/v2/models/nope", "/v2/models/xception/ready"):
            response = secured.request("POST" if "classify" in path else "GET", path)
            assert response.status_code == 401, path


@pytest.mark.parametrize("setting", ["api_key", "admin_key"])
def test_keys_are_compared_in_constant_time(
    exported_model: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """A timing test would be flaky, so the comparison itself is observed: every key check,
    right or wrong, goes through ``hmac.compare_digest`` (``==`` returns at the first
    differing byte, which lets a client guess a key byte by byte)."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    if setting == "api_key":
        settings, method, path = make_settings(exported_model, api_key="k3y"), "GET", "/v1/models"
    else:
        settings = make_settings(exported_model, admin_key="k3y", model_control="explicit")
        method, path = "POST", "/v2/repository/models/xception/load"
    with TestClient(create_app(settings)) as secured:
        for token, status in (("k3x", 401), ("k3y", 200)):
            headers = {"Authorization": f"Bearer {token}"}
            response = secured.request(method, path, headers=headers)
            assert response.status_code == status, (token, response.text)
    assert compared == [(b"k3x", b"k3y"), (b"k3y", b"k3y")]


def test_a_failed_request_gives_back_its_version_and_its_place(exported_model: Path) -> None:
    """Whatever a request ends in (here an undecodable file, raised deep in decoding), the
    gate releases its hold on the version (an unload would otherwise wait out the drain
    timeout) and its admission place (admission would otherwise count it for ever). A fresh
    app: on the shared client, places leaked by earlier tests would hide a leak or fake one."""
    with TestClient(create_app(make_settings(exported_model))) as fresh:
        wait_ready(fresh)
        version = fresh.app.state.repository.resolve(None, None)  # type: ignore[attr-defined]
        broken = files(("broken.jpg", b"\xff\xd8\xff\xe0 not really a JPEG"))
        for _ in range(3):
            assert fresh.post("/classify", files=broken).status_code == 400
        assert version.leases == 0
        assert served(fresh).admission.reserved == 0
        cat = files(("cat.jpg", image_bytes("chelsea.jpg")))
        assert fresh.post("/classify", files=cat).status_code == 200


def test_a_request_that_ends_in_an_unexpected_error_gives_back_its_hold(
    exported_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error no handler turns into an answer (a bug deep in inference, planted here)
    propagates through the gate: its hold on the version and its admission place are
    still given back, and the next request is served."""
    from service.core.inference import InferenceService

    real = InferenceService.infer

    async def failing(self: InferenceService, *args: Any, **kwargs: Any) -> Any:
        if failing.armed:  # type: ignore[attr-defined]
            raise RuntimeError("a bug, planted")
        return await real(self, *args, **kwargs)

    failing.armed = True  # type: ignore[attr-defined]
    monkeypatch.setattr(InferenceService, "infer", failing)
    app = create_app(make_settings(exported_model))
    with TestClient(app, raise_server_exceptions=False) as unsafe:
        wait_ready(unsafe)
        version = app.state.repository.resolve(None, None)
        cat = files(("cat.jpg", image_bytes("chelsea.jpg")))
        assert unsafe.post("/classify", files=cat).status_code == 500
        assert version.leases == 0
        assert served(unsafe).admission.reserved == 0
        failing.armed = False  # type: ignore[attr-defined]
        assert unsafe.post("/classify", files=cat).status_code == 200


def metric(text: str, sample: str) -> float:
    """The value of one Prometheus sample line (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_health_models_metrics_docs(client: TestClient) -> None:
    """Counters and metrics move by exactly what this test's own requests did."""
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    classify = 'xception_http_requests_total{endpoint="/classify",method="POST",model="xception"'
    ok = f'{classify},status="200",version="1"}}'
    bad = f'{classify},status="400",version="1"}}'
    before_counters = client.get("/v1/models").json()["runtime"]["counters"]
    before = client.get("/metrics").text
    two = files(("a.jpg", image_bytes("chelsea.jpg")), ("b.png", image_bytes("coffee.png")))
    assert client.post("/classify", files=two).status_code == 200
    assert client.post("/classify", files=files(("x.jpg", b"\xff\xd8\xff"))).status_code == 400
    models = client.get("/v1/models").json()
    assert models["card"]["arch"] == "legacy_xception" and models["card"]["num_features"] == 2048
    runtime = models["runtime"]
    # The shared client runs XCEPTION_ENGINE=auto: the provider is the measured engine's.
    assert runtime["provider"] == runtime["engine"]["provider"]
    assert runtime["provider"] in {"CPUExecutionProvider", "OpenVINO CPU (fp32)"}
    assert runtime["batching"]["max_batch_size"] == 4
    counters = runtime["counters"]
    assert counters["images"] - before_counters["images"] == 2
    assert 1 <= counters["batches"] - before_counters["batches"] <= 2
    assert counters["queue_depth"] == 0
    after = client.get("/metrics").text
    assert metric(after, ok) - metric(before, ok) == 1
    assert metric(after, bad) - metric(before, bad) == 1
    images = 'xception_images_total{model="xception",version="1"}'
    assert metric(after, images) - metric(before, images) == 2
    assert metric(after, images) == counters["images"]  # one source for both exports
    for name in (
        "xception_http_request_duration_seconds_bucket",
        "xception_batch_size_bucket",
        'xception_queue_depth{model="xception",version="1"}',
        'xception_rejected_total{model="xception",reason="queue_full",version="1"}',
        'xception_rejected_total{model="xception",reason="queue_wait",version="1"}',
        'xception_model_state{model="xception",state="ready",version="1"}',
    ):
        assert name in after, name
    assert client.get("/docs").status_code == 200
    assert "/classify" in client.get("/openapi.json").json()["paths"]


def test_many_thin_images_in_one_request_are_refused_quickly(client: TestClient) -> None:
    # Eight 1×2000 PNGs (each ~90 bytes) once cost 1.3 GB and 2 s apiece to resize.
    thin = io.BytesIO()
    Image.new("L", (1, 2000)).save(thin, "PNG")
    started = time.perf_counter()
    response = client.post(
        "/classify", files=files(*[(f"{i}.png", thin.getvalue()) for i in range(8)])
    )
    assert_envelope(response, 422, "unsupported_aspect_ratio")
    assert time.perf_counter() - started < 2.0


def test_validation_errors_never_echo_the_upload(client: TestClient) -> None:
    # A urlencoded form cannot carry files: refused by its type, none of it echoed.
    response = client.post("/classify", data={"file": "A" * 900_000})
    assert_envelope(response, 415, "unsupported_media_type")
    assert len(response.content) < 1000
    # Multipart text fields named "file" (not file parts): 422, none of the values echoed.
    many = client.post("/classify", files=[("file", (None, "x" * 1000))] * 40)
    assert_envelope(many, 422, "invalid_parameter")
    assert len(many.content) < 1000 and "xxxx" not in many.text
    # A bad query parameter is named with an 80-character excerpt of what was sent.
    cat = files(("cat.jpg", image_bytes("chelsea.jpg")))
    long = client.post("/classify", params={"top_k": "k" * 5000}, files=cat)
    assert_envelope(long, 422, "invalid_parameter")
    assert len(long.content) < 1000 and "5,002 characters" in long.json()["error"]["message"]


def test_raw_and_json_base64_bodies_equal_multipart(client: TestClient) -> None:
    """The same file as a raw body or as base64 in JSON gets the multipart answer."""
    cat = image_bytes("chelsea.jpg")
    multipart = client.post("/features", files=files(("cat.jpg", cat))).json()["results"][0]
    raw = client.post(
        "/features?filename=cat.jpg", content=cat, headers={"content-type": "image/jpeg"}
    )
    octets = client.post(
        "/features", content=cat, headers={"content-type": "application/octet-stream"}
    )
    encoded = base64.b64encode(cat).decode()
    as_json = client.post(
        "/features",
        json={"images": [{"data": encoded, "filename": "cat.jpg"},
                         {"data": f"data:image/jpeg;base64,{encoded}"}]},
    )  # fmt: skip
    assert raw.status_code == octets.status_code == as_json.status_code == 200
    results = [raw.json()["results"][0], octets.json()["results"][0], *as_json.json()["results"]]
    assert [r["filename"] for r in results] == ["cat.jpg", "upload", "cat.jpg", "images[1]"]
    for result in results:
        np.testing.assert_allclose(result["features"], multipart["features"], rtol=1e-5)


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ({"images": [{"data": "%%%not base64"}]}, 400, "invalid_image_reference", "images[0]"),
        ({"images": [{"data": "data:text/plain;base64,aGVsbG8="}]}, 415, "unsupported_media_type",
         "is not an image"),
        ({"images": [{"data": base64.b64encode(b"hello").decode()}]}, 415,
         "unsupported_media_type", "not an image format"),
        ({"images": []}, 422, "invalid_parameter", "images"),
        ({"pictures": []}, 422, "invalid_parameter", "images"),
    ],
    ids=["bad-base64", "text-data-uri", "not-an-image", "empty", "wrong-key"],
)  # fmt: skip
def test_bad_json_images_get_a_clear_4xx(
    client: TestClient, body: dict, status: int, code: str, fragment: str
) -> None:
    response = client.post("/classify", json=body)
    assert_envelope(response, status, code)
    assert fragment in response.json()["error"]["message"]


def test_unknown_body_type_is_415(client: TestClient) -> None:
    response = client.post("/classify", content=b"hi", headers={"content-type": "text/plain"})
    assert_envelope(response, 415, "unsupported_media_type")
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_a_lone_onnx_file_is_served_as_a_repository_of_one(
    exported_model: Path, tmp_path: Path
) -> None:
    """XCEPTION_MODEL may name a bare .onnx file anywhere (no model.json, no <name>/<version>
    folder): it is served under the name and version its embedded card gives, through the
    same load path as a repository's versions, and listed as one."""
    lone = tmp_path / "anything.onnx"
    lone.write_bytes((exported_model / "model.onnx").read_bytes())
    card = json.loads((exported_model / "model.json").read_text())
    with TestClient(create_app(make_settings(lone))) as app:
        wait_ready(app)
        answer = app.post("/classify", files=files(("cat.jpg", image_bytes("chelsea.jpg"))))
        assert answer.json()["model"] == {"name": card["name"], "version": card["version"]}
        listed = app.get("/v1/models").json()["models"]
        assert [(m["name"], m["version"], m["state"], m["path"]) for m in listed] == [
            (card["name"], card["version"], "ready", str(lone))
        ]


def test_a_content_length_of_any_digits_is_read_without_error() -> None:
    """A header of thousands of digits (past Python's int-from-string limit) is a too-large
    body, never a ValueError; non-ASCII digits are not a number at all."""
    from service.edge.limits import UNREADABLE_LENGTH, content_length

    def scope(value: bytes) -> dict:
        return {"headers": [(b"content-length", value)]}

    assert content_length(scope(b"123")) == 123
    assert content_length({"headers": []}) is None
    for odd in (b"9" * 5000, "١٢".encode(), b"-1", b"1e3", b""):
        assert content_length(scope(odd)) == UNREADABLE_LENGTH


def test_the_image_format_allow_list_reaches_the_service_and_its_schema(
    exported_model: Path,
) -> None:
    """XCEPTION_IMAGE_FORMATS and XCEPTION_MAX_FILES set to non-default values are what
    uploads meet (415 naming the formats, 413 past the count) and what the OpenAPI document
    declares: each media type it lists for a multipart part is accepted when a real image
    of that type is sent, one it leaves out is refused."""
    settings = make_settings(exported_model, image_formats="png,webp", max_files=2)
    with TestClient(create_app(settings)) as app:
        wait_ready(app)
        refused = app.post("/classify", files=files(("cat.jpg", image_bytes("chelsea.jpg"))))
        assert_envelope(refused, 415, "unsupported_media_type")
        assert "XCEPTION_IMAGE_FORMATS: PNG, WEBP" in refused.json()["error"]["message"]
        body = app.get("/openapi.json").json()["paths"]["/classify"]["post"]
        body = body["requestBody"]["content"]
        multipart = body["multipart/form-data"]
        declared = multipart["encoding"]["file"]["contentType"].split(", ")
        assert declared == ["image/png", "image/webp"]
        picture = Image.open(io.BytesIO(image_bytes("chelsea.jpg"))).convert("RGB")
        for media in declared:
            fmt = media.removeprefix("image/").upper()
            sent = files((f"cat.{fmt.lower()}", encode(picture, fmt)))
            assert app.post("/classify", files=sent).is_success, media
        assert multipart["schema"]["properties"]["file"]["maxItems"] == 2
        three = files(*[("c.png", image_bytes("coffee.png"))] * 3)
        assert_envelope(app.post("/classify", files=three), 413, "too_many_files")
