"""``python -m bench``: raw engine vs the running service, one run, one results file.

Steps: take (or export) a model → decode cost per upload size → raw ONNX Runtime at
each batch size → start ``xception-serve`` on loopback → closed-loop load at each
concurrency → table with the ratio service ÷ raw engine → JSON + Markdown in
``bench/results/``. Timing is compared within the run only (a 2-core machine is noisy).
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path
from typing import Any

from artifact.layout import DEFAULT_MODEL_FOLDER
from artifact.preprocess import Preprocessor
from artifact.runtime import CUDA_EP, ModelRuntime, available_cores
from bench.engine import decode_cost, make_uploads, raw_engine
from bench.loadgen import (
    ServiceProcess,
    classify_request,
    drive,
    start_service,
    v2_infer_request,
)
from bench.report import ROOT, SOURCES, ensure_model, machine, step
from bench.report import write_results as write_files


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL_FOLDER,
        help="model folder; exported with --weights none when missing",
    )
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--batch-sizes", default="1,2,4,8", help="raw engine batch sizes")
    parser.add_argument("--concurrency", default="", help="default 1,4,8,16 (CPU), +64 (CUDA)")
    parser.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    parser.add_argument(
        "--protocols",
        default="multipart,v2",
        help="multipart (/classify) and/or v2 (binary Open Inference Protocol, top-5)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="raw engine time per batch size")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra XCEPTION_* settings for the service (KEY without prefix)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--label", default="", help="name suffix for the results files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = ensure_model(args.model)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    uploads = make_uploads(SOURCES)

    step("raw engine: loading the model with the service's session options")
    runtime = ModelRuntime(model / "model.onnx", args.device, available_cores())
    card = runtime.card
    preprocess = Preprocessor.for_card(card, max_pixels=10**9)
    concurrency = (
        [int(c) for c in args.concurrency.split(",")]
        if args.concurrency
        else ([1, 4, 8, 16, 64] if runtime.provider == CUDA_EP else [1, 4, 8, 16])
    )
    step(f"decode + resize cost ({len(uploads)} uploads, {', '.join(n for n, _ in uploads[:4])}…)")
    decode = decode_cost(preprocess, uploads, rounds=3)
    step(f"raw engine on {runtime.provider}: batch sizes {batch_sizes}, {args.seconds:g}s each")
    image = preprocess(uploads[0][1])
    raw = raw_engine(runtime, image, batch_sizes, args.seconds)
    for row in raw:
        step(f"  batch {row['batch_size']}: {row['images_per_s']:.2f} img/s")
    del runtime  # free its threads and memory before the service starts

    service = start_service(model, args.service_env, args.device)
    try:
        protocols = {
            "multipart": classify_request,
            "v2": v2_infer_request(card.name),
        }
        chosen = [p.strip() for p in args.protocols.split(",") if p.strip()]
        for protocol in chosen:  # warm each HTTP path
            drive(service.url, uploads, 2, 8, protocols[protocol])
        service.start_sampling()
        loads = []
        for level in concurrency:
            for protocol in chosen:
                row = {"protocol": protocol}
                row.update(drive(service.url, uploads, level, args.requests, protocols[protocol]))
                loads.append(row)
                step(
                    f"  {protocol} concurrency {level}: {row['images_per_s']:.2f} img/s, "
                    f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, "
                    f"{row['errors']} errors"
                )
        info = service.runtime_info()
    finally:
        service.stop()
    results = summarize(args, card.model_dump(mode="json"), decode, raw, loads, info, service)
    write_results(args.out, results, args.label)
    return 0


def summarize(
    args: argparse.Namespace,
    card: dict[str, Any],
    decode: dict,
    raw: list[dict],
    loads: list[dict],
    info: dict,
    service: ServiceProcess,
) -> dict[str, Any]:
    best_raw = max(r["images_per_s"] for r in raw)
    single_ms = (
        next(r["batch_ms_p50"] for r in raw if r["batch_size"] == 1)
        if any(r["batch_size"] == 1 for r in raw)
        else None
    )
    for row in loads:
        row["ratio_to_raw_best"] = row["images_per_s"] / best_raw
    samples = service.rss_samples
    rss: dict[str, Any] = {
        "peak_mb": max(samples, default=0.0),
        "first_mb": statistics.mean(samples[:4]) if samples else 0.0,
        "last_mb": statistics.mean(samples[-4:]) if samples else 0.0,
    }
    rss["samples_mb"] = [round(v) for v in samples[:: max(1, len(samples) // 40)]]
    rss["drift_pct"] = (
        100 * (rss["last_mb"] - rss["first_mb"]) / rss["first_mb"] if samples else 0.0
    )
    multipart = [r for r in loads if r["protocol"] == "multipart"] or loads
    c1 = next((r for r in multipart if r["concurrency"] == 1), None)
    facts = machine()
    return {
        "created_at": facts.pop("created_at"),
        "machine": facts,
        "model": {k: card.get(k) for k in ("name", "version", "arch", "precision", "weights")},
        "provider": info["provider"],
        "service_settings": {"batching": info["batching"], "threads": info["threads"]},
        "decode": decode,
        "raw_engine": raw,
        "raw_best_images_per_s": best_raw,
        "raw_single_image_ms": single_ms,
        "service": loads,
        "service_batch_sizes": info["counters"]["batch_sizes"],
        "rss_mb": rss,
        "checks": {
            "c8_ratio": next(
                (r["ratio_to_raw_best"] for r in multipart if r["concurrency"] == 8), None
            ),
            "c1_p50_minus_raw_single_ms": (c1["p50_ms"] - single_ms) if c1 and single_ms else None,
            "rss_drift_pct": rss["drift_pct"],
        },
        "args": {k: str(v) for k, v in vars(args).items()},
    }


def markdown(results: dict[str, Any]) -> str:
    model, machine = results["model"], results["machine"]
    lines = [
        f"### {model['arch']} {model['precision']} on {results['provider']} "
        f"({machine['cores']} cores; {results['created_at']})",
        "",
        f"CPU: {machine['cpu']} (flags: {', '.join(machine['cpu_flags']) or '–'}); "
        f"ONNX Runtime {machine['onnxruntime']}, OpenVINO {machine.get('openvino') or '–'}.",
        "",
        f"Decode + resize: {results['decode']['ms_mean']:.1f} ms per image (mean over sizes: "
        + ", ".join(f"{s} {v:.1f}" for s, v in results["decode"]["ms_per_image"].items())
        + ").",
        "",
        "| raw engine batch | img/s | batch p50 ms |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['batch_size']} | {r['images_per_s']:.2f} | {r['batch_ms_p50']:.1f} |"
        for r in results["raw_engine"]
    ]
    lines += [
        "",
        "| protocol | service concurrency | img/s | ÷ raw best | p50 ms | p95 ms | p99 ms "
        "| errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['protocol']} | {r['concurrency']} | {r['images_per_s']:.2f} | "
        f"{r['ratio_to_raw_best']:.2f} | "
        f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} |"
        for r in results["service"]
    ]
    checks, rss = results["checks"], results["rss_mb"]
    single = results["raw_single_image_ms"]
    lines += [
        "",
        f"Service RSS: peak {rss['peak_mb']:.0f} MB, drift {rss['drift_pct']:+.1f}% "
        "across the run. "
        f"Concurrency-1 p50 − raw single-image latency ({single:.0f} ms): "
        f"{checks['c1_p50_minus_raw_single_ms']:+.0f} ms. Batches formed: "
        f"{results['service_batch_sizes']}. Settings: {results['service_settings']}.",
        "",
    ]
    return "\n".join(lines)


def write_results(folder: Path, results: dict[str, Any], label: str) -> None:
    # "OpenVINO CPU (bf16)" → "openvino-cpu-bf16": file names without spaces or brackets.
    provider = re.sub(
        r"[^a-z0-9]+", "-", results["provider"].replace("ExecutionProvider", "").lower()
    )
    name = f"{provider.strip('-')}-{results['model']['precision']}{'-' + label if label else ''}"
    write_files(folder, results, name, markdown)
