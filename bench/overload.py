"""``python -m bench overload``: goodput and latency under a storm of clients that never back off.

Steps: take (or export) a model → raw ONNX Runtime throughput (the engine's ceiling) →
start ``xception-serve`` → unloaded: ``--clients`` closed-loop clients, none refused →
storm: ``--factor`` × as many, each resending at once after every answer, 503 included →
goodput (images answered 200 per second) as a ratio of the unloaded run, latency of the
refusals and of the admitted requests → JSON + Markdown in ``bench/results/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from artifact.layout import DEFAULT_MODEL_FOLDER
from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime
from bench.engine import make_uploads, raw_engine
from bench.loadgen import start_service
from bench.rawclient import Outcomes, multipart_request, storm
from bench.report import ROOT, SOURCES, ensure_model, machine, step, write_results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench overload", description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_FOLDER)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--clients", type=int, default=10, help="unloaded run's clients")
    parser.add_argument("--factor", type=int, default=10, help="storm = factor × clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="per run")
    parser.add_argument("--raw-seconds", type=float, default=4.0, help="raw engine per batch size")
    parser.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--label", default="", help="name suffix for the results files")
    return parser.parse_args(argv)


def percentile_ms(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.array(values) * 1000, q)) if values else None


def summarize_run(out: Outcomes, elapsed: float, clients: int) -> dict[str, Any]:
    ok, refused = out.by_status.get(200, []), out.by_status.get(503, [])
    return {
        "clients": clients,
        "seconds": elapsed,
        "answers": {str(k): len(v) for k, v in sorted(out.by_status.items())},
        "transport_errors": out.transport_errors,
        "goodput_images_per_s": len(ok) / elapsed,
        "refused_pct": 100 * len(refused) / max(1, len(ok) + len(refused)),
        "admitted_p50_ms": percentile_ms(ok, 50),
        "admitted_p99_ms": percentile_ms(ok, 99),
        "refused_p50_ms": percentile_ms(refused, 50),
        "refused_p99_ms": percentile_ms(refused, 99),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = ensure_model(args.model)
    uploads = make_uploads(SOURCES)
    step(f"raw engine ({args.raw_seconds:g}s per batch size)")
    runtime = ModelRuntime(model / "model.onnx", args.device, machine()["cores"])
    image = Preprocessor.for_card(runtime.card, max_pixels=10**9)(uploads[0][1])
    raw = raw_engine(runtime, image, [1, 4], args.raw_seconds)
    raw_best = max(r["images_per_s"] for r in raw)
    provider, card = runtime.provider, runtime.card.model_dump(mode="json")
    del runtime

    service = start_service(model, args.service_env, args.device)
    try:
        requests = [
            multipart_request("127.0.0.1", service.port, "/classify", name, data)
            for name, data in uploads
        ]
        storm("127.0.0.1", service.port, requests, 2, 2.0)  # warm the HTTP path
        runs = {}
        for name, clients in (("unloaded", args.clients), ("storm", args.clients * args.factor)):
            step(f"{name}: {clients} clients, no back-off, {args.seconds:g}s")
            out, elapsed = storm("127.0.0.1", service.port, requests, clients, args.seconds)
            runs[name] = summarize_run(out, elapsed, clients)
            step(f"  {runs[name]}")
        info = service.runtime_info()
    finally:
        service.stop()
    unloaded, stormed = runs["unloaded"], runs["storm"]
    results = {
        **machine(),
        "kind": "overload",
        "model": {k: card.get(k) for k in ("name", "version", "arch", "precision")},
        "provider": provider,
        "raw_engine": raw,
        "raw_best_images_per_s": raw_best,
        "service_settings": {"batching": info["batching"], "limits": info["limits"]},
        "runs": runs,
        "checks": {
            "goodput_ratio": stormed["goodput_images_per_s"] / unloaded["goodput_images_per_s"],
            "unloaded_ratio_to_raw": unloaded["goodput_images_per_s"] / raw_best,
            "refused_p99_ms": stormed["refused_p99_ms"],
            "admitted_p99_ms": stormed["admitted_p99_ms"],
            "max_queue_wait_s": info["batching"]["max_queue_wait_s"],
        },
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    write_results(args.out, results, f"overload{'-' + args.label if args.label else ''}", markdown)
    return 0


def markdown(results: dict[str, Any]) -> str:
    checks, runs = results["checks"], results["runs"]
    lines = [
        f"### Overload: {results['model']['arch']} {results['model']['precision']} on "
        f"{results['provider']} ({results['cores']} cores; {results['created_at']})",
        "",
        f"Raw engine best: {results['raw_best_images_per_s']:.2f} img/s. "
        f"Admission bound: {checks['max_queue_wait_s']:g}s of expected waiting.",
        "",
        "| run | clients | 200 img/s | refused % | admitted p50 / p99 ms | 503 p50 / p99 ms | "
        "answers | transport errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| {name} | {r['clients']} | {r['goodput_images_per_s']:.2f} | "
            f"{r['refused_pct']:.1f} | {_ms(r['admitted_p50_ms'])} / {_ms(r['admitted_p99_ms'])} "
            f"| {_ms(r['refused_p50_ms'])} / {_ms(r['refused_p99_ms'])} | {r['answers']} | "
            f"{r['transport_errors']} |"
        )
    lines += [
        "",
        f"Goodput under the storm ÷ unloaded: **{checks['goodput_ratio']:.2f}** (target ≥ 0.95); "
        f"unloaded ÷ raw engine: {checks['unloaded_ratio_to_raw']:.2f}; 503 p99 "
        f"{_ms(checks['refused_p99_ms'])} ms (target < 50); admitted p99 "
        f"{_ms(checks['admitted_p99_ms'])} ms (target ≤ 2500).",
        "",
    ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    raise SystemExit(main())
