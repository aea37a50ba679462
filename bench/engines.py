"""``python -m bench engines``: the same model files on ONNX Runtime and on OpenVINO, raw.

Steps: for each model folder given (an fp32 export, an int8 export, …) → load it on each
engine with the service's thread count → decoded uint8 batches of a real photo at each batch
size for ``--seconds`` → img/s per engine and precision, and each row's ratio to ONNX Runtime
fp32 measured in the same run → JSON + Markdown in ``bench/results/``, with the CPU's flags
(bf16 speed depends on AVX512_BF16 / AMX; an AVX2-only CPU has neither). bf16 runs the fp32
file through OpenVINO at bf16 inference precision, and only where the CPU has bf16.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from artifact.engines.openvino_engine import cpu_bf16
from artifact.layout import DEFAULT_MODEL_FOLDER
from artifact.preprocess import Preprocessor
from artifact.runtime import EngineSetting, ModelRuntime, available_cores
from bench.engine import raw_engine
from bench.report import (
    ROOT,
    SOURCES,
    ensure_model,
    machine,
    machine_line,
    step,
    write_results,
)

ENGINES: tuple[EngineSetting, ...] = ("onnxruntime", "openvino")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench engines", description=__doc__)
    parser.add_argument(
        "--model", type=Path, action="append", default=[],
        help="model folder (repeat: fp32, int8, …); default: an fp32 export with random weights",
    )  # fmt: skip
    parser.add_argument("--batch-sizes", default="1,4", help="raw engine batch sizes")
    parser.add_argument("--seconds", type=float, default=8.0, help="per engine and batch size")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--label", default="")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = args.model or [ensure_model(DEFAULT_MODEL_FOLDER)]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    has_bf16, why = cpu_bf16()
    step(f"bf16: {why}")
    rows: list[dict[str, Any]] = []
    for folder in models:
        path = folder / "model.onnx"
        runs = [ModelRuntime(path, "cpu", available_cores(), engine=e) for e in ENGINES]
        fp32 = runs[0].card
        if has_bf16 and fp32.precision == "fp32":
            bf16 = fp32.model_copy(update={"engine": "openvino", "inference_precision": "bf16"})
            runs.append(ModelRuntime(path, "cpu", available_cores(), card=bf16))
        image = Preprocessor.for_card(fp32, max_pixels=10**9)(SOURCES[0].read_bytes())
        for runtime in runs:
            step(f"{folder} ({runtime.card.precision}) on {runtime.provider}: {batch_sizes}")
            for row in raw_engine(runtime, image, batch_sizes, args.seconds):
                row.update(model=str(folder), precision=fp32.precision, provider=runtime.provider)
                rows.append(row)
                step(f"  batch {row['batch_size']}: {row['images_per_s']:.2f} img/s")
        del runs, runtime
    base = {
        r["batch_size"]: r["images_per_s"]
        for r in rows
        if r["provider"] == "CPUExecutionProvider" and r["precision"] == "fp32"
    }
    for row in rows:
        reference = base.get(row["batch_size"])
        row["ratio_to_ort_fp32"] = row["images_per_s"] / reference if reference else None
    results = {**machine(), "kind": "engines", "bf16": why, "rows": rows}
    write_results(args.out, results, f"engines{'-' + args.label if args.label else ''}", markdown)
    return 0


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "### Engines, raw (no HTTP): " + machine_line(results),
        "",
        f"bf16: {results['bf16']}.",
        "",
        "| model | precision | engine | batch | img/s | ÷ ONNX Runtime fp32 (same run) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        ratio = "–" if r["ratio_to_ort_fp32"] is None else f"{r['ratio_to_ort_fp32']:.2f}"
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['provider']} | "
            f"{r['batch_size']} | {r['images_per_s']:.2f} | {ratio} |"
        )
    return "\n".join([*lines, ""])
