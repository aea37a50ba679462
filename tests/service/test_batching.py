"""Dynamic batching under real concurrency: shared batches, back-pressure, deadlines,
disconnects, failures, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from bench.loadgen import ServiceProcess, free_port
from service.app import create_app
from service.core.admission import AdmissionControl, Ticket
from service.core.batcher import (
    BatcherClosed,
    BatchFailed,
    DeadlineExceeded,
    DynamicBatcher,
)
from service.edge.pacing import MAX_HOLD_S
from service.errors import ServiceError
from tests.service.conftest import files, image_bytes, make_settings, served, wait_ready
from tests.service.test_api import assert_envelope

CAT = image_bytes("chelsea.jpg")


@pytest.fixture(scope="module")
def server(exported_model: Path) -> Iterator[ServiceProcess]:
    live = ServiceProcess(
        exported_model,
        {
            "device": "cpu",
            "max_batch_size": 8,
            "max_batch_delay_ms": 50,
            "max_files": 8,
            "max_queue_wait_s": 60,  # batching, not admission, is under test here
        },
    )
    try:
        live.wait_ready()
        yield live
    finally:
        live.stop()


def post_cat(url: str, endpoint: str = "/classify", count: int = 1) -> httpx.Response:
    upload = files(*[(f"cat{i}.jpg", CAT) for i in range(count)])
    return httpx.post(f"{url}{endpoint}", files=upload, timeout=120)


def test_concurrent_requests_are_batched_together(server: ServiceProcess) -> None:
    before = httpx.get(f"{server.url}/v1/models").json()["runtime"]["counters"]
    endpoints = ["/classify", "/features"] * 8
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda e: post_cat(server.url, e), endpoints))
    assert [r.status_code for r in responses] == [200] * 16
    classify = [r.json()["results"][0]["predictions"][0] for r in responses[::2]]
    assert all(p == classify[0] for p in classify)  # same image, same answer, in any batch
    after = httpx.get(f"{server.url}/v1/models").json()["runtime"]["counters"]
    assert after["images"] - before["images"] == 16
    new_batches = after["batches"] - before["batches"]
    assert new_batches < 16, f"no batch larger than 1 was formed: {after['batch_sizes']}"
    assert max(int(size) for size in after["batch_sizes"]) > 1


def counters(url: str) -> dict[str, int]:
    counts: dict[str, int] = httpx.get(f"{url}/v1/models").json()["runtime"]["counters"]
    return counts


def wait_for(url: str, condition: Callable[[dict[str, int]], bool], timeout_s: float = 60) -> None:
    """Poll the service's counters until ``condition`` holds (fails after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not condition(counts := counters(url)):
        assert time.monotonic() < deadline, f"timed out; counters {counts}"
        time.sleep(0.02)


def test_disconnected_client_is_dropped_before_inference(server: ServiceProcess) -> None:
    before = counters(server.url)
    with ThreadPoolExecutor(max_workers=1) as pool:
        busy = pool.submit(post_cat, server.url, "/features", 8)  # keeps the model busy
        wait_for(server.url, lambda c: c["in_flight"] > 0)
        boundary = uuid.uuid4().hex
        parts = (
            b"".join(
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="c{i}.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n".encode()
                + CAT
                + b"\r\n"
                for i in range(8)
            )
            + f"--{boundary}--\r\n".encode()
        )
        head = (
            f"POST /features HTTP/1.1\r\nHost: x\r\nContent-Length: {len(parts)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head + parts)
            # Decoded and queued behind the busy request (or that one is done): hang up.
            wait_for(server.url, lambda c: c["queue_depth"] >= 8 or busy.done())
            assert not busy.done(), "the busy request finished first: nothing left to drop"
        assert busy.result().status_code == 200
    wait_for(server.url, lambda c: c["queue_depth"] == 0 and c["in_flight"] == 0)
    after = counters(server.url)
    assert after["dropped_cancelled"] > before["dropped_cancelled"]
    assert after["images"] - before["images"] < 16


def test_queue_overflow_gives_503_with_retry_after(exported_model: Path) -> None:
    settings = make_settings(exported_model, max_queue=2, max_files=4)
    with TestClient(create_app(settings)) as app:
        wait_ready(app)
        response = app.post("/classify", files=files(*[(f"{i}.jpg", CAT) for i in range(3)]))
        assert_envelope(response, 503, "overloaded")
        retry_after = int(response.headers["Retry-After"])
        assert retry_after >= 1
        # Refused once its body was read (3 images, room for 2): the client that comes back
        # at once is held until its Retry-After, as for a refusal from the headers.
        started = time.monotonic()
        assert app.post("/classify", files=files(("ok.jpg", CAT))).status_code == 200
        assert time.monotonic() - started >= min(retry_after, MAX_HOLD_S) - 0.1
        counters = app.get("/v1/models").json()["runtime"]["counters"]
        assert counters["rejected_queue_full"] == 1


def test_tiny_timeout_gives_504(exported_model: Path) -> None:
    with TestClient(create_app(make_settings(exported_model, request_timeout_s=0.001))) as app:
        wait_ready(app)
        assert_envelope(app.post("/classify", files=files(("c.jpg", CAT))), 504, "timeout")
        assert app.get("/healthz").status_code == 200


def test_not_ready_gives_503(exported_model: Path) -> None:
    with TestClient(create_app(make_settings(exported_model))) as app:
        wait_ready(app)
        # As while a (new) version warms up: not routable yet.
        app.app.state.repository.resolve(None, None).state = "loading"  # type: ignore[attr-defined]
        response = app.post("/classify", files=files(("c.jpg", CAT)))
        assert_envelope(response, 503, "not_ready")
        assert "Retry-After" in response.headers
        assert_envelope(app.get("/readyz"), 503, "not_ready")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_graceful_shutdown_drains_in_flight_requests(
    exported_model: Path, stop: signal.Signals
) -> None:
    """SIGTERM (Kubernetes, docker stop) and Ctrl-C alike: every request in flight answered,
    then a quiet exit — no traceback; Ctrl-C's status is 130, as for any interrupted command."""
    settings = {
        "device": "cpu",
        "max_batch_size": 4,
        "max_batch_delay_ms": 5,
        "max_files": 8,
        "max_queue_wait_s": 60,
    }
    live = ServiceProcess(exported_model, settings)
    try:
        live.wait_ready()
        with ThreadPoolExecutor(max_workers=4) as pool:
            pending = [pool.submit(post_cat, live.url, "/features", 6) for _ in range(4)]
            # All 24 images accepted (run, running or queued) while some are still waiting.
            wait_for(live.url, lambda c: c["images"] + c["in_flight"] + c["queue_depth"] == 24)
            assert not all(p.done() for p in pending)
            live.process.send_signal(stop)
            responses = [p.result() for p in pending]
        assert [r.status_code for r in responses] == [200] * 4
        assert all(len(r.json()["results"]) == 6 for r in responses)
        # uvicorn re-raises the signal it handled once the drain is done: SIGTERM ends the
        # process as the signal's default does; SIGINT becomes exit status 130.
        expected = (0, -signal.SIGTERM) if stop == signal.SIGTERM else (130, -signal.SIGINT)
        assert live.process.wait(60) in expected
        output = live.logged()
        assert "Traceback" not in output and "ERROR" not in output, output
    finally:
        live.stop()


# The batcher on its own (a plain function stands in for the session: these tests are
# about the queueing contract, which is the same whatever computes the rows).


def run_rows(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    means = images.reshape(len(images), -1).mean(axis=1, keepdims=True)
    return means, means * 2


def test_batcher_answers_every_caller_when_a_batch_fails() -> None:
    calls = []

    def flaky(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return run_rows(images)

    async def scenario() -> None:
        batcher = DynamicBatcher(flaky, max_batch_size=4, max_delay_s=0.05)
        batcher.start()
        deadline = asyncio.get_running_loop().time() + 10
        images = [np.full((2, 2, 3), i, dtype=np.uint8) for i in range(3)]
        first = batcher.submit(images, deadline)
        results = await asyncio.gather(*first, return_exceptions=True)
        assert all(isinstance(r, BatchFailed) for r in results)
        # The failed batch no longer counts as running: at a measured 0.5 s per image, its 3
        # images left "in flight" would be 1.5 s ahead, past the 1 s bound, and admission would
        # refuse every request from now on.
        assert batcher.in_flight == 0
        batcher.stats.seconds_per_image = 0.5
        control = AdmissionControl(batcher, max_queue=100, max_wait_s=1.0)
        control.admit().release()
        second = await asyncio.gather(*batcher.submit(images, deadline))
        assert [float(p[0]) for p, _ in second] == [0.0, 1.0, 2.0]  # rows in order
        assert batcher.stats.failed_batches == 1 and batcher.stats.batches == 1
        await batcher.close(timeout_s=5)

    asyncio.run(scenario())


def test_the_batch_delay_waits_for_images_that_arrive_within_it() -> None:
    """max_delay_s 0.5: an image queued 0.1 s after the first joins its batch (one batch of
    2); a batcher that did not wait would run two batches of 1."""

    async def scenario() -> None:
        batcher = DynamicBatcher(run_rows, max_batch_size=4, max_delay_s=0.5)
        batcher.start()
        loop = asyncio.get_running_loop()
        image = np.zeros((2, 2, 3), dtype=np.uint8)
        first = batcher.submit([image], loop.time() + 10)
        await asyncio.sleep(0.1)
        second = batcher.submit([image], loop.time() + 10)
        await asyncio.gather(*first, *second)
        assert batcher.stats.batch_sizes == {2: 1}
        await batcher.close(timeout_s=5)

    asyncio.run(scenario())


def test_batcher_skips_cancelled_and_expired() -> None:
    async def scenario() -> None:
        batcher = DynamicBatcher(run_rows, max_batch_size=8, max_delay_s=0.05)
        loop = asyncio.get_running_loop()
        image = np.zeros((2, 2, 3), dtype=np.uint8)
        cancelled = batcher.submit([image], loop.time() + 10)
        expired = batcher.submit([image], loop.time() - 1)
        live = batcher.submit([image, image], loop.time() + 10)
        cancelled[0].cancel()
        batcher.start()
        assert len(await asyncio.gather(*live)) == 2
        with pytest.raises(DeadlineExceeded):
            await expired[0]
        stats = batcher.stats
        assert (stats.images, stats.dropped_cancelled, stats.dropped_expired) == (2, 1, 1)
        assert stats.batch_sizes == {2: 1}
        await batcher.close(timeout_s=5)

    asyncio.run(scenario())


def test_container_healthcheck_probes_readyz(server: ServiceProcess) -> None:
    import os
    import subprocess
    import sys

    def probe(port: int) -> int:
        return subprocess.run(
            [sys.executable, "-m", "service.healthcheck"],
            env={**os.environ, "XCEPTION_PORT": str(port)},
            capture_output=True,
            timeout=30,
        ).returncode

    assert probe(server.port) == 0
    assert probe(free_port()) == 1  # nothing listening: unhealthy


def test_admission_bounds_expected_wait_and_retry_after_follows_it() -> None:
    async def scenario() -> None:
        batcher = DynamicBatcher(run_rows, max_batch_size=4, max_delay_s=0.0)
        batcher.stats.seconds_per_image = 0.5  # as measured
        control = AdmissionControl(batcher, max_queue=100, max_wait_s=2.0)
        image = np.zeros((2, 2, 3), dtype=np.uint8)
        first = control.admit()
        assert isinstance(first, Ticket)  # nothing ahead
        # 3 images queued + 1 request admitted whose images are not queued yet: 4 × 0.5 s.
        batcher.submit([image] * 3, deadline=1e18)
        assert control.expected_wait_s() == pytest.approx(2.0)
        assert isinstance(control.admit(), Ticket)  # exactly at the bound: admitted
        with pytest.raises(ServiceError) as refused:  # now 2.5 s ahead
            control.admit()
        assert refused.value.code == "overloaded"
        assert "XCEPTION_MAX_QUEUE_WAIT_S" in refused.value.message
        first.release()
        first.release()  # idempotent
        assert control.reserved == 1
        batcher.submit([image] * 16, deadline=1e18)  # 20 ahead → 10 s, 8 s over the bound
        with pytest.raises(ServiceError) as refused:
            control.admit()
        assert refused.value.retry_after_s == 9  # ceil(10 − 2 + 0.5)
        assert batcher.stats.rejected_queue_wait == 2
        assert batcher.stats.rejected_queue_full == 0

    asyncio.run(scenario())


def test_admission_counts_the_batch_the_model_is_running() -> None:
    """Nothing queued, but a batch of 4 running at 0.5 s per image: a request admitted now
    waits ~2 s for it, past the 1.5 s bound, so it is refused; once it ends, admitted."""
    running, release = threading.Event(), threading.Event()

    def held_rows(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        running.set()
        release.wait(30)
        return run_rows(images)

    async def scenario() -> None:
        batcher = DynamicBatcher(held_rows, max_batch_size=4, max_delay_s=0.0)
        batcher.start()
        batcher.stats.seconds_per_image = 0.5
        control = AdmissionControl(batcher, max_queue=100, max_wait_s=1.5)
        loop = asyncio.get_running_loop()
        futures = batcher.submit([np.zeros((2, 2, 3), dtype=np.uint8)] * 4, loop.time() + 30)
        assert await loop.run_in_executor(None, running.wait, 30)
        assert batcher.queue_depth == 0 and batcher.in_flight == 4
        with pytest.raises(ServiceError) as refused:
            control.admit()
        assert refused.value.code == "overloaded" and "~2.0s" in refused.value.message
        release.set()
        await asyncio.gather(*futures)
        batcher.stats.seconds_per_image = 0.5  # the stand-in's batch measured itself fast
        assert isinstance(control.admit(), Ticket)
        await batcher.close(timeout_s=10)

    try:
        asyncio.run(scenario())
    finally:
        release.set()


def test_admission_bounds_the_count_too() -> None:
    async def scenario() -> None:
        batcher = DynamicBatcher(run_rows, max_batch_size=4, max_delay_s=0.0)
        batcher.stats.seconds_per_image = 0.001
        control = AdmissionControl(batcher, max_queue=3, max_wait_s=60.0)
        batcher.submit([np.zeros((2, 2, 3), dtype=np.uint8)] * 2, deadline=1e18)
        assert isinstance(control.admit(), Ticket)
        with pytest.raises(ServiceError, match="XCEPTION_MAX_QUEUE"):
            control.admit()
        assert batcher.stats.rejected_queue_full == 1 and batcher.stats.rejected_queue_wait == 0

    asyncio.run(scenario())


def test_retry_after_header_follows_the_expected_wait(exported_model: Path) -> None:
    """Two requests admitted (their bodies still arriving) at a measured 1.5 s per image: a
    third would wait 3 s, past the 1.5 s bound, and is told when the bound will hold again."""
    settings = make_settings(exported_model, max_queue_wait_s=1.5)
    with TestClient(create_app(settings)) as app:
        wait_ready(app)
        service = served(app)
        service.batcher.stats.seconds_per_image = 1.5  # as if the model had slowed down
        held = [service.admission.admit(), service.admission.admit()]
        assert all(isinstance(ticket, Ticket) for ticket in held)
        version = app.app.state.repository.resolve(None, None)  # type: ignore[attr-defined]
        response = app.post("/classify", files=files(("cat.jpg", CAT)))
        assert_envelope(response, 503, "overloaded")
        # 2 images ahead × 1.5 s = 3 s; 3 − 1.5 + 1.5 (its own image) = 3 whole seconds.
        assert response.headers["Retry-After"] == "3"
        # Refused by admission: its hold on the version is given back (else the next unload
        # or SIGTERM waits out the whole drain for requests long answered).
        assert version.leases == 0
        for ticket in held:
            ticket.release()
        assert app.post("/classify", files=files(("cat.jpg", CAT))).status_code == 200


def test_capacity_is_checked_with_the_real_count_before_decoding(exported_model: Path) -> None:
    """Admitted from its headers (one image's place), a request whose body holds more images
    than fit is refused before they are decoded: undecodable uploads get the 503, not the 400
    that decoding them would give; its place is given back."""
    from concurrent.futures import ThreadPoolExecutor

    from artifact.errors import ImageError
    from artifact.runtime import ModelRuntime
    from service.config import slices
    from service.core.context import RequestContext
    from service.core.drain import DrainSignal
    from service.core.inference import InferenceService, Upload

    async def scenario() -> None:
        runtime = ModelRuntime(exported_model / "model.onnx", "cpu")
        limits = slices.inference(make_settings(exported_model, max_queue=3))
        with ThreadPoolExecutor(1) as pool:
            service = InferenceService(runtime, limits, DrainSignal(5), pool)
            image = np.zeros((*runtime.card.input_size, 3), dtype=np.uint8)
            service.batcher.submit([image], deadline=1e18)  # not started: it stays queued
            context = RequestContext()
            context.ticket = service.admission.admit()  # 1 queued + this one's first: fits
            broken = Upload("broken.png", b"\x89PNG\r\n\x1a\n...")
            with pytest.raises(ServiceError, match="1 images queued or arriving and 3 in this"):
                await service.infer([broken] * 3, context)
            assert service.batcher.stats.rejected_queue_full == 1
            context.release()
            assert service.admission.reserved == 0  # the place is given back
            context = RequestContext()
            context.ticket = service.admission.admit()
            with pytest.raises(ImageError):  # 2 fit: decoded, and refused as undecodable
                await service.infer([broken] * 2, context)
            context.release()

    asyncio.run(scenario())


def test_batcher_close_runs_what_is_queued() -> None:
    """close() is a drain: images already queued are still run and answered."""

    def slow_rows(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.05)
        return run_rows(images)

    async def scenario() -> None:
        batcher = DynamicBatcher(slow_rows, max_batch_size=2, max_delay_s=0.0)
        batcher.start()
        images = [np.full((2, 2, 3), i, dtype=np.uint8) for i in range(6)]
        futures = batcher.submit(images, asyncio.get_running_loop().time() + 30)
        await batcher.close(timeout_s=10)  # three batches still to run
        assert [float(f.result()[0][0]) for f in futures] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        assert batcher.stats.images == 6
        with pytest.raises(BatcherClosed):
            batcher.submit(images[:1], asyncio.get_running_loop().time() + 30)

    asyncio.run(scenario())


def test_a_client_back_before_its_retry_after_is_held_until_then() -> None:
    """Retry-After enforced per connection: a request on a connection refused with
    Retry-After: 1 that comes back at once is held (unread) for that second; another
    connection, or the same one once admitted, is not held."""
    from service.edge.pacing import RetryAfterPacing

    async def scenario() -> None:
        pacing, stop = RetryAfterPacing(), asyncio.Event()
        eager = {"client": ("10.0.0.1", 5001)}
        other = {"client": ("10.0.0.1", 5002)}
        pacing.refused(eager, 1)
        started = time.monotonic()
        assert await pacing.hold(other, stop) == 0.0  # another connection: never held
        assert time.monotonic() - started < 0.1
        held = await pacing.hold(eager, stop)
        assert 0.9 <= held <= 1.0 and time.monotonic() - started >= 0.9
        pacing.admitted(eager)
        assert await pacing.hold(eager, stop) == 0.0
        pacing.refused(eager, 1)
        stop.set()  # the drain: nobody is held through it
        started = time.monotonic()
        await pacing.hold(eager, stop)
        assert time.monotonic() - started < 0.1

    asyncio.run(scenario())


def test_a_retry_after_longer_than_the_cap_holds_only_the_cap() -> None:
    """Told to wait 8 s, a client that comes back at once is held 5 s (MAX_HOLD_S, the most a
    request is held unread), not 8: answered in time for its own timeouts."""
    from service.edge.pacing import MAX_HOLD_S, RetryAfterPacing

    assert MAX_HOLD_S == 5.0  # what docs/reference.md states ("at most 5 s")

    async def scenario() -> None:
        pacing, stop = RetryAfterPacing(), asyncio.Event()
        eager = {"client": ("10.0.0.1", 5001)}
        pacing.refused(eager, 8)
        started = time.monotonic()
        held = await pacing.hold(eager, stop)
        waited = time.monotonic() - started
        assert held == pytest.approx(5.0, abs=0.05) and 4.9 <= waited < 6.0, (held, waited)

    asyncio.run(scenario())
