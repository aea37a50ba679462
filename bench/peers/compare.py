"""``python -m bench peers``: our service and its peers, same model, same photos, same run.

Steps: take (or export) a model → the raw engine (ONNX Runtime, decoded batches: the ceiling)
→ for each server in turn — ``xception-serve``, a naive FastAPI + ONNX Runtime script, LitServe
(``pip install litserve``; skipped with a line when missing) — start it, warm it, drive it with
the same closed-loop clients at each concurrency, stop it → img/s, p50, p99 and each one's
ratio to the raw engine and to ours → JSON + Markdown in ``bench/results/`` with the CPU flags.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from artifact.layout import DEFAULT_MODEL_FOLDER
from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime, available_cores
from bench.engine import make_uploads, raw_engine
from bench.loadgen import (
    RequestFor,
    ServiceProcess,
    base64_json_request,
    classify_request,
    drive,
    free_port,
    start_service,
)
from bench.report import (
    ROOT,
    SOURCES,
    ensure_model,
    machine,
    machine_line,
    step,
    write_results,
)

# name → (module under bench.peers, the package it needs, how its clients send an image)
PEERS: dict[str, tuple[str, str | None, RequestFor]] = {
    "naive FastAPI + ORT": ("naive_fastapi", None, classify_request),
    "LitServe": ("litserve_server", "litserve", base64_json_request),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_FOLDER)
    parser.add_argument("--concurrency", default="1,8", help="closed-loop clients per run")
    parser.add_argument("--requests", type=int, default=96, help="requests per run")
    parser.add_argument("--seconds", type=float, default=8.0, help="raw engine per batch size")
    parser.add_argument(
        "--service-env", action="append", default=[], metavar="KEY=VALUE",
        help="XCEPTION_* settings for xception-serve (KEY without the prefix)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--label", default="")
    return parser.parse_args(argv)


class PeerProcess:
    """One peer script on a free port, in a process group of its own (LitServe forks)."""

    def __init__(self, module: str, model: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"bench.peers.{module}", "--model", str(model),
             "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip

    def wait_ready(self, request: tuple[str, dict[str, Any]], timeout_s: float = 180.0) -> None:
        path, arguments = request
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"peer exited with status {self.process.returncode}")
            try:
                if httpx.post(f"{self.url}{path}", timeout=30, **arguments).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError("peer did not answer")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = ensure_model(args.model)
    levels = [int(c) for c in args.concurrency.split(",")]
    uploads = make_uploads(SOURCES)
    runtime = ModelRuntime(model / "model.onnx", "cpu", available_cores())
    step(f"raw engine on {runtime.provider}: batch sizes [1, 4], {args.seconds:g}s each")
    image = Preprocessor.for_card(runtime.card, max_pixels=10**9)(uploads[0][1])
    raw = raw_engine(runtime, image, [1, 4], args.seconds)
    raw_best = max(row["images_per_s"] for row in raw)
    card = runtime.card.model_dump(mode="json")
    del runtime
    rows: list[dict[str, Any]] = []
    servers: list[tuple[str, Any, RequestFor]] = [("xception-serve", None, classify_request)]
    for name, (module, package, request_for) in PEERS.items():
        if package and importlib.util.find_spec(package) is None:
            step(f"{name}: not installed (pip install {package}): skipped")
            continue
        servers.append((name, module, request_for))
    for name, module, request_for in servers:
        step(f"{name}: starting")
        server: ServiceProcess | PeerProcess
        if module is None:
            server = start_service(model, args.service_env, "cpu")
        else:
            server = PeerProcess(module, model)
        try:
            if isinstance(server, PeerProcess):
                server.wait_ready(request_for(*uploads[0]))
            drive(server.url, uploads, 2, 8, request_for)  # warm the HTTP path
            for level in levels:
                row = {"server": name, **drive(server.url, uploads, level, args.requests,
                                              request_for)}  # fmt: skip
                rows.append(row)
                step(f"  c={level}: {row['images_per_s']:.2f} img/s, p50 {row['p50_ms']:.0f} "
                     f"ms, p99 {row['p99_ms']:.0f} ms, {row['errors']} errors")  # fmt: skip
        finally:
            server.stop()
    ours = {r["concurrency"]: r for r in rows if r["server"] == "xception-serve"}
    for row in rows:
        row["ratio_to_raw"] = row["images_per_s"] / raw_best
        row["ratio_to_ours"] = row["images_per_s"] / ours[row["concurrency"]]["images_per_s"]
    results = {
        **machine(),
        "kind": "peers",
        "model": {k: card.get(k) for k in ("name", "arch", "precision")},
        "raw_engine": raw,
        "raw_best_images_per_s": raw_best,
        "rows": rows,
        "service_env": args.service_env,
    }
    write_results(args.out, results, f"peers{'-' + args.label if args.label else ''}", markdown)
    return 0


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"### Peers: {results['model']['arch']} {results['model']['precision']}, "
        + machine_line(results),
        "",
        f"Raw engine best (decoded batches, no HTTP): {results['raw_best_images_per_s']:.2f} "
        "img/s. Every server runs the same ONNX Runtime session options and preprocessing. "
        f"xception-serve settings: {results['service_env'] or 'defaults'}.",
        "",
        "| server | clients | img/s | ÷ raw | ÷ xception-serve | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {r['images_per_s']:.2f} | "
            f"{r['ratio_to_raw']:.2f} | {r['ratio_to_ours']:.2f} | {r['p50_ms']:.0f} | "
            f"{r['p99_ms']:.0f} | {r['errors']} |"
        )
    return "\n".join([*lines, ""])
