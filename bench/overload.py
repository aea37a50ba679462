"""``python -m bench overload``: goodput and latency under overload, with clients that behave
as real ones do.

Steps: take (or export) a model → raw ONNX Runtime throughput (the engine's ceiling) →
start ``xception-serve`` → unloaded: ``--clients`` closed-loop clients, none refused → then
``--factor`` × as many clients, three ways: (a) ``retry-after``, clients that wait the
``Retry-After`` delay after a 503 (as the openai SDK does); (b) ``give-up``, clients that
abandon a request after 5 s (a user, a proxy) and send it again; (c) ``wrk``, no back-off at
all, from Debian's native ``wrk`` (so that the storm costs the box little CPU), with a few
Python probe clients beside it for the admitted requests' latency → goodput (images answered
200 per second, read by a client) as a ratio of the unloaded run, latency of the refusals and
of the admitted requests → JSON + Markdown in ``bench/results/``.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from artifact.layout import DEFAULT_MODEL_FOLDER
from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime
from bench import wrk
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
        "given_up": out.given_up,
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
        runs: dict[str, dict[str, Any]] = {}
        crowd = args.clients * args.factor
        for name, clients, behaviour in (
            ("unloaded", args.clients, "storm"),
            ("retry-after", crowd, "retry-after"),
            ("give-up", crowd, "give-up"),
        ):
            step(f"{name}: {clients} clients ({behaviour}), {args.seconds:g}s")
            out, elapsed = storm("127.0.0.1", service.port, requests, clients, args.seconds,
                                 behaviour)  # fmt: skip
            runs[name] = summarize_run(out, elapsed, clients)
            step(f"  {runs[name]}")
        if wrk.available():
            step(f"wrk: {crowd} connections, no back-off, {args.seconds:g}s (+ 4 probe clients)")
            runs["wrk"] = wrk_run(service.port, requests[0], crowd, args.seconds)
            step(f"  {runs['wrk']}")
        else:
            step("wrk is not installed (apt-get install wrk): the no-back-off run is skipped")
        info = service.runtime_info()
    finally:
        service.stop()
    base = runs["unloaded"]["goodput_images_per_s"]
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
            name: {
                "goodput_ratio": run["goodput_images_per_s"] / base,
                "admitted_p99_ms": run["admitted_p99_ms"],
                "refused_p99_ms": run["refused_p99_ms"],
            }
            for name, run in runs.items()
            if name != "unloaded"
        },
        "unloaded_ratio_to_raw": base / raw_best,
        "max_queue_wait_s": info["batching"]["max_queue_wait_s"],
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    write_results(args.out, results, f"overload{'-' + args.label if args.label else ''}", markdown)
    return 0


# The targets of the overload issue, per run: goodput ÷ unloaded, admitted p99, 503 p99.
TARGETS = {"retry-after": (0.95, 2500, 100), "give-up": (0.8, None, None), "wrk": (0.9, 2500, None)}


def markdown(results: dict[str, Any]) -> str:
    checks, runs = results["checks"], results["runs"]
    machine_line = (
        f"{results['cpu']}, flags: {', '.join(results['cpu_flags']) or '–'}; "
        f"{results['created_at']}"
    )
    lines = [
        f"### Overload: {results['model']['arch']} {results['model']['precision']} on "
        f"{results['provider']} ({results['cores']} cores; {machine_line})",
        "",
        f"Raw engine best: {results['raw_best_images_per_s']:.2f} img/s; unloaded service ÷ raw: "
        f"{results['unloaded_ratio_to_raw']:.2f}. Admission bound: "
        f"{results['max_queue_wait_s']:g}s of expected waiting.",
        "",
        "| run | clients | 200 img/s | ÷ unloaded (target) | admitted p50 / p99 ms | "
        "503 p50 / p99 ms | answers | given up | transport errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        ratio = "1.00" if name == "unloaded" else f"{checks[name]['goodput_ratio']:.2f}"
        target = TARGETS.get(name)
        if target:
            ratio += f" (≥ {target[0]})"
        lines.append(
            f"| {name} | {r['clients']} | {r['goodput_images_per_s']:.2f} | {ratio} | "
            f"{_ms(r['admitted_p50_ms'])} / {_ms(r['admitted_p99_ms'])} | "
            f"{_ms(r['refused_p50_ms'])} / {_ms(r['refused_p99_ms'])} | {r['answers']} | "
            f"{r.get('given_up', 0)} | {r['transport_errors']} |"
        )
    lines += [
        "",
        "Targets: (a) retry-after ≥ 0.95 × unloaded, admitted p99 ≤ 2500 ms, 503 p99 ≤ 100 ms; "
        "(b) give-up ≥ 0.8 ×; (c) wrk ≥ 0.9 ×, admitted p99 ≤ 2500 ms (the wrk row's admitted "
        "latency is its Python probe clients'; its 503 latency is wrk's, every answer).",
        "",
    ]
    return "\n".join(lines)


def wrk_run(port: int, request: bytes, connections: int, seconds: float) -> dict[str, Any]:
    """wrk's storm, with 4 Python probe clients beside it for the admitted latency."""
    head, _, body = request.partition(b"\r\n\r\n")
    content_type = next(
        line.split(":", 1)[1].strip()
        for line in head.decode("latin-1").split("\r\n")
        if line.lower().startswith("content-type:")
    )
    with ThreadPoolExecutor(1) as pool:
        probes = pool.submit(storm, "127.0.0.1", port, [request], 4, seconds)
        stormed = wrk.wrk_storm(
            f"http://127.0.0.1:{port}/classify", body, content_type, connections, seconds
        )
        out, elapsed = probes.result()
    probed = summarize_run(out, elapsed, 4)
    ok = stormed["statuses"].get(200, 0) + out.count(200)
    refused = stormed["statuses"].get(503, 0) + out.count(503)
    answers = dict(stormed["statuses"])
    for status, latencies in out.by_status.items():
        answers[status] = answers.get(status, 0) + len(latencies)
    return {
        **probed,
        "clients": connections + 4,
        "answers": {str(k): v for k, v in sorted(answers.items())},
        "goodput_images_per_s": ok / seconds,
        "refused_pct": 100 * refused / max(1, ok + refused),
        "refused_p50_ms": stormed["latency_p50_ms"],
        "refused_p99_ms": stormed["latency_p99_ms"],
        "wrk_socket_errors": stormed["socket_errors"],
    }


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    raise SystemExit(main())
