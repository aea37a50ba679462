"""The service under load: a real ``xception-serve`` process and a closed-loop client.

Closed loop: ``concurrency`` clients each send one upload, wait for the answer, send
the next, until the run's request count is spent — the way a fixed pool of callers
behaves, and bounded by construction. RSS is sampled from /proc while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.report import step


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ServiceProcess:
    """``python -m service`` on a free loopback port with the given XCEPTION_* settings.

    Shared by the benchmark and the tests that need a real server process.
    """

    def __init__(self, model: Path | None, settings: Mapping[str, object]) -> None:
        """``model``: the single model to serve, or None when ``settings`` name a
        ``model_repository``."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "XCEPTION_LOG_LEVEL": "warning"}  # settings may override it
        env.update({f"XCEPTION_{k.upper()}": str(v) for k, v in settings.items()})
        env.update(XCEPTION_HOST="127.0.0.1", XCEPTION_PORT=str(self.port))
        if model is not None:
            env["XCEPTION_MODEL"] = str(model)
        # The log goes to a file, never to an unread pipe: a full pipe (64 kB of warnings
        # under a storm) would block the server on its next log line.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as this object)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            text=True,
        )
        self.rss_samples: list[float] = []
        self._sampling = False

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.logged()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("service did not become ready")

    def runtime_info(self) -> dict:
        info: dict = httpx.get(f"{self.url}/v1/models", timeout=10).json()["runtime"]
        return info

    def start_sampling(self, every_s: float = 0.25) -> None:
        self._sampling = True

        def sample() -> None:
            while self._sampling and self.process.poll() is None:
                self.rss_samples.append(rss_mb(self.process.pid))
                time.sleep(every_s)

        threading.Thread(target=sample, daemon=True).start()

    def logged(self) -> str:
        """Everything the server has written to stderr so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int | None:
        self._sampling = False
        self.process.terminate()
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return None


# A request for one upload: (path, httpx keyword arguments).
RequestFor = Callable[[str, bytes], tuple[str, dict[str, Any]]]


def classify_request(name: str, data: bytes) -> tuple[str, dict[str, Any]]:
    """The original API: multipart ``/classify``."""
    return "/classify", {"files": {"file": (name, data)}}


def base64_json_request(name: str, data: bytes) -> tuple[str, dict[str, Any]]:
    """``{"image": <base64>}`` to ``/classify``: how LitServe's image examples send one."""
    return "/classify", {"json": {"image": _base64(data)}}


@functools.lru_cache(maxsize=64)
def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def v2_infer_request(model_name: str) -> RequestFor:
    """The Open Inference Protocol with binary tensors, as tritonclient builds it (its own
    request encoder, the same top-5 classification output); bodies built once per file."""
    import tritonclient.http as triton

    bodies: dict[str, tuple[str, dict[str, Any]]] = {}

    def request(name: str, data: bytes) -> tuple[str, dict[str, Any]]:
        if name not in bodies:
            tensor = triton.InferInput("image_bytes", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([data], dtype=np.object_))
            top5 = triton.InferRequestedOutput("probabilities", class_count=5)
            body, json_size = triton.InferenceServerClient.generate_request_body(
                [tensor], outputs=[top5]
            )
            headers = {"Content-Type": "application/octet-stream"}
            if json_size is not None:
                headers["Inference-Header-Content-Length"] = str(json_size)
            bodies[name] = (f"/v2/models/{model_name}/infer", {"content": body, "headers": headers})
        return bodies[name]

    return request


async def _closed_loop(
    url: str,
    uploads: list[tuple[str, bytes]],
    concurrency: int,
    requests: int,
    request_for: RequestFor,
) -> tuple[list[float], float, int]:
    remaining = requests
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def caller(worker: int) -> None:
            nonlocal remaining, errors
            turn = worker
            while remaining > 0:
                remaining -= 1
                name, data = uploads[turn % len(uploads)]
                turn += concurrency
                started = time.perf_counter()
                path, arguments = request_for(name, data)
                response = await client.post(f"{url}{path}", **arguments)
                if response.status_code == 200:  # a refusal is not an image served
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        return latencies, time.perf_counter() - started, errors


def drive(
    url: str,
    uploads: list[tuple[str, bytes]],
    concurrency: int,
    requests: int,
    request_for: RequestFor = classify_request,
) -> dict:
    """One closed-loop run: img/s and p50/p95/p99 latency of the answered (200) requests, and
    how many were not answered 200 (refusals included)."""
    latencies, elapsed, errors = asyncio.run(
        _closed_loop(url, uploads, concurrency, requests, request_for)
    )
    ms = 1000 * np.array(latencies or [float("nan")])
    return {
        "concurrency": concurrency,
        "requests": len(latencies) + errors,
        "errors": errors,
        "images_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def start_service(model: Path, service_env: list[str], device: str) -> ServiceProcess:
    """A ready ``xception-serve`` with a benchmark's ``--service-env KEY=VALUE`` settings."""
    settings = dict(kv.split("=", 1) for kv in service_env)
    settings.setdefault("device", device)
    step(f"starting xception-serve ({settings})")
    service = ServiceProcess(model, settings)
    try:
        service.wait_ready()
    except BaseException:
        service.stop()
        raise
    return service
