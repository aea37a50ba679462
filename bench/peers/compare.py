"""``python -m bench peers``: our service and its peers, same model, same photos, same run.

Steps: take (or export) a model → the raw engine (the one the loader chooses for it here, on
decoded batches: the ceiling) and the decode + resize CPU time per upload → the decode-inclusive
bound (raw rate and decode CPU sharing the cores) → for each server in turn — ``xception-serve``,
a naive FastAPI + ONNX Runtime script, a naive FastAPI + OpenVINO one, LitServe and Mosec (each
skipped with a line when its package is missing) — start it, warm it, drive it with the same
closed-loop clients at each concurrency, stop it → img/s, p50, p99 and each one's ratio to the
raw engine, the bound and ours → JSON + Markdown in ``bench/results/`` with the CPU flags.
LitServe and Mosec run our runtime on the engine the raw run chose; the naive scripts run the
engine their name says.
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
from bench.engine import decode_cost, make_uploads, raw_engine
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


def raw_body_request(name: str, data: bytes) -> tuple[str, dict[str, Any]]:
    """The image as the whole body to ``/inference``: Mosec's default route."""
    return "/inference", {"content": data}


# name → (module under bench.peers, the package it needs, how its clients send an image)
RAW_BATCHES = [1, 4, 8]
PEERS: dict[str, tuple[str, str | None, RequestFor]] = {
    "naive FastAPI + ORT": ("naive_fastapi", None, classify_request),
    "naive FastAPI + OpenVINO": ("naive_openvino", "openvino", classify_request),
    "LitServe": ("litserve_server", "litserve", base64_json_request),
    "Mosec": ("mosec_server", "mosec", raw_body_request),
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

    def __init__(self, module: str, model: Path, engine: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"bench.peers.{module}", "--model", str(model),
             "--port", str(self.port), "--engine", engine],
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


def _choice(choice: dict[str, Any]) -> str:
    figures = choice.get("images_per_s")
    if not figures:
        return f"{choice['engine']}, {choice['why']}"
    return f"{choice['engine']}, measured " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = ensure_model(args.model)
    levels = [int(c) for c in args.concurrency.split(",")]
    uploads = make_uploads(SOURCES)
    runtime = ModelRuntime(model / "model.onnx", "cpu", available_cores())
    engine = runtime.choice.engine
    step(f"raw engine: {runtime.choice.line()}; batch sizes {RAW_BATCHES}, {args.seconds:g}s each")
    preprocess = Preprocessor.for_card(runtime.card, max_pixels=10**9)
    raw = raw_engine(runtime, preprocess(uploads[0][1]), RAW_BATCHES, args.seconds)
    raw_best = max(row["images_per_s"] for row in raw)
    card = runtime.card.model_dump(mode="json")
    raw_choice = runtime.choice.describe() | {"provider": runtime.provider}
    del runtime
    decode = decode_cost(preprocess, uploads, rounds=3)
    cores = available_cores()
    # Each image costs the engine cores/raw_best core-seconds and its decode ms of one core.
    bound = cores / (cores / raw_best + decode["ms_mean"] / 1000)
    step(f"decode + resize {decode['ms_mean']:.1f} ms CPU per upload: decode-inclusive bound "
         f"{bound:.2f} img/s on {cores} cores (raw engine {raw_best:.2f})")  # fmt: skip
    rows: list[dict[str, Any]] = []
    served: dict[str, Any] = {}
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
            server = PeerProcess(module, model, engine)
        try:
            if isinstance(server, PeerProcess):
                server.wait_ready(request_for(*uploads[0]))
            else:
                served = httpx.get(f"{server.url}/v1/models").json()["runtime"]["engine"]
                step(f"  xception-serve chose {served['engine']} ({served['how']})")
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
        row["ratio_to_bound"] = row["images_per_s"] / bound
        row["ratio_to_ours"] = row["images_per_s"] / ours[row["concurrency"]]["images_per_s"]
    results = {
        **machine(),
        "kind": "peers",
        "model": {k: card.get(k) for k in ("name", "arch", "precision")},
        "raw_engine": raw,
        "raw_best_images_per_s": raw_best,
        "raw_engine_choice": raw_choice,
        "served_engine": served,
        "decode": decode,
        "decode_inclusive_bound_images_per_s": bound,
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
        f"img/s on {results['raw_engine_choice']['provider']} (the loader's choice: "
        f"{_choice(results['raw_engine_choice'])}); xception-serve chose "
        f"{_choice(results['served_engine'])}. Decode + resize: "
        f"{results['decode']['ms_mean']:.1f} ms of CPU per upload, so the decode-inclusive "
        f"bound on {results['cores']} cores is {results['decode_inclusive_bound_images_per_s']:.2f}"
        " img/s. Every server uses the same preprocessing. xception-serve settings: "
        f"{results['service_env'] or 'defaults'}.",
        "",
        "| server | clients | img/s | ÷ raw | ÷ bound | ÷ xception-serve | p50 ms | p99 ms "
        "| errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {r['images_per_s']:.2f} | "
            f"{r['ratio_to_raw']:.2f} | {r['ratio_to_bound']:.2f} | {r['ratio_to_ours']:.2f} | "
            f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} |"
        )
    return "\n".join([*lines, ""])
