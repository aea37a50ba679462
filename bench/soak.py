"""``python -m bench soak``: memory over thousands of mixed requests, then a drain under SIGTERM.

Steps: start ``xception-serve`` → warm-up share of the requests → the rest; both are a closed
loop of ``--concurrency`` clients cycling through good and bad requests (classify, features,
several files, truncated/undecodable/extreme-aspect/empty/non-image files) → RSS drift from
the end of warm-up to the end (sampled from /proc) → shutdown: one upload stalled half-way,
one request in flight, SIGTERM; time until the process exits and what each client got →
JSON + Markdown in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import signal
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from artifact.layout import DEFAULT_MODEL_FOLDER
from bench.engine import make_uploads
from bench.loadgen import ServiceProcess, start_service
from bench.report import ROOT, SOURCES, ensure_model, machine, step, write_results

Files = list[tuple[str, bytes]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_FOLDER)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup-share", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--label", default="")
    return parser.parse_args(argv)


def mixed_requests() -> list[tuple[str, Files]]:
    """(path with query, files) pairs: good requests and every kind of bad image."""
    good = make_uploads(SOURCES)
    thin = io.BytesIO()
    Image.new("L", (1, 5000)).save(thin, "PNG")
    bad: Files = [
        ("truncated.jpg", good[1][1][: len(good[1][1]) // 3]),
        ("broken.tif", b"II*\x00" + b"\x00" * 64),
        ("thin.png", thin.getvalue()),
        ("empty.jpg", b""),
        ("notes.txt", b"not an image at all"),
    ]
    mix: list[tuple[str, Files]] = []
    for i, upload in enumerate(good):
        mix.append(("/classify?top_k=3", [upload]))
        mix.append(("/features?normalize=true", [good[(i + 3) % len(good)]]))
        mix.append(("/classify", [bad[i % len(bad)]]))
    mix.append(("/classify", good[:3]))
    return mix


async def _closed_loop(url: str, mix: list[tuple[str, Files]], count: int, clients: int) -> dict:
    statuses: collections.Counter[int] = collections.Counter()
    remaining = count
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def caller(worker: int) -> None:
            nonlocal remaining
            turn = worker
            while remaining > 0:
                remaining -= 1
                path, files = mix[turn % len(mix)]
                turn += clients
                response = await client.post(path, files=[("file", f) for f in files])
                statuses[response.status_code] += 1
                if response.status_code == 503:  # a well-behaved client: honour Retry-After
                    await asyncio.sleep(min(2.0, float(response.headers.get("Retry-After", 1))))

        await asyncio.gather(*(caller(i) for i in range(clients)))
    return {str(k): v for k, v in sorted(statuses.items())}


def stalled_shutdown(service: ServiceProcess, upload: bytes) -> dict[str, Any]:
    """SIGTERM with one upload stalled half-way and one request in flight."""
    stalled = socket.create_connection(("127.0.0.1", service.port), timeout=60)
    stalled.sendall(
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
    )
    in_flight: dict[str, Any] = {}

    def send_in_flight() -> None:
        response = httpx.post(f"{service.url}/classify", files={"file": ("a.jpg", upload)})
        in_flight["status"] = response.status_code

    thread = threading.Thread(target=send_in_flight)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    answer = b""
    while chunk := stalled.recv(4096):  # the server closes after answering
        answer += chunk
    stalled_after = time.monotonic() - started
    service.process.wait(120)
    exited_after = time.monotonic() - started
    thread.join(60)
    return {
        "exit_s": exited_after,
        "stalled_answer_s": stalled_after,
        "stalled_status_line": answer.decode("latin-1").split("\r\n", 1)[0],
        "stalled_got_envelope": b'"error"' in answer,
        "in_flight_status": in_flight.get("status"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = ensure_model(args.model)
    mix = mixed_requests()
    service = start_service(model, args.service_env, args.device)
    try:
        service.start_sampling(every_s=0.2)
        warm = max(1, int(args.requests * args.warmup_share))
        step(f"warm-up: {warm} mixed requests, {args.concurrency} clients")
        statuses = [asyncio.run(_closed_loop(service.url, mix, warm, args.concurrency))]
        after_warmup = statistics.mean(service.rss_samples[-5:])
        step(f"soak: {args.requests - warm} more (RSS after warm-up {after_warmup:.0f} MB)")
        started = time.monotonic()
        loop = _closed_loop(service.url, mix, args.requests - warm, args.concurrency)
        statuses.append(asyncio.run(loop))
        soak_s = time.monotonic() - started
        final = statistics.mean(service.rss_samples[-5:])
        step("shutdown with a stalled upload and a request in flight")
        drain = service.runtime_info()["limits"]["drain_timeout_s"]
        shutdown = stalled_shutdown(service, mix[0][1][0][1])
    finally:
        service.stop()
    results = {
        **machine(),
        "kind": "soak",
        "requests": args.requests,
        "statuses": {"warmup": statuses[0], "soak": statuses[1]},
        "soak_seconds": soak_s,
        "rss_mb": {"after_warmup": after_warmup, "final": final, "peak": max(service.rss_samples)},
        "checks": {
            "rss_drift_pct": 100 * (final - after_warmup) / after_warmup,
            "server_errors": sum(
                n for phase in statuses for status, n in phase.items() if int(status) >= 500
            ),
            "shutdown_s": shutdown["exit_s"],
            "drain_timeout_s": drain,
        },
        "shutdown": shutdown,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    write_results(args.out, results, f"soak{'-' + args.label if args.label else ''}", markdown)
    return 0


def markdown(results: dict[str, Any]) -> str:
    checks, rss, down = results["checks"], results["rss_mb"], results["shutdown"]
    return "\n".join(
        [
            f"### Soak: {results['requests']} mixed requests ({results['cores']} cores; "
            f"{results['created_at']})",
            "",
            f"Answers: warm-up {results['statuses']['warmup']}, soak "
            f"{results['statuses']['soak']} ({results['soak_seconds']:.0f} s); 5xx: "
            f"**{checks['server_errors']}**.",
            f"RSS: {rss['after_warmup']:.0f} MB after warm-up → {rss['final']:.0f} MB at the end "
            f"(drift **{checks['rss_drift_pct']:+.2f}%**, target < 2%), peak {rss['peak']:.0f} MB.",
            f"SIGTERM with a stalled upload and a request in flight: exited after "
            f"**{down['exit_s']:.1f} s** (drain setting {checks['drain_timeout_s']:g} s); the "
            f"stalled upload got `{down['stalled_status_line']}` after "
            f"{down['stalled_answer_s']:.2f} s (envelope: {down['stalled_got_envelope']}), "
            "the request in flight "
            f"{down['in_flight_status']}.",
            "",
        ]
    )
