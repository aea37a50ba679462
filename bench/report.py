"""What every benchmark shares: the model it runs, step lines, machine facts, results files."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artifact.runtime import available_cores

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "tests" / "data" / "chelsea.jpg", ROOT / "tests" / "data" / "coffee.png"]


def step(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_model(model: Path) -> Path:
    """``model``, exported with random weights first when it does not exist."""
    if (model / "model.onnx").is_file():
        return model
    step(f"no model at {model}: exporting legacy_xception --weights none")
    subprocess.run(
        [sys.executable, "-m", "export", "--weights", "none", "--out", str(model)], check=True
    )
    return model


# The CPU features that change what the engines can do (ratios depend on them).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_facts() -> tuple[str, list[str]]:
    """The CPU's model name and which of :data:`CPU_FLAGS` it has (Linux; else the platform)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    fields = dict(
        line.split(":", 1) for line in text.split("\n\n", 1)[0].splitlines() if ":" in line
    )
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", platform.machine()), [f for f in CPU_FLAGS if f in flags]


def machine() -> dict[str, Any]:
    """When and where the benchmark ran: the CPU, its flags, the engines' versions."""
    import onnxruntime

    try:
        import openvino

        openvino_version = openvino.__version__.split("-")[0]
    except ImportError:
        openvino_version = None

    cpu, flags = cpu_facts()
    return {
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": available_cores(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version,
    }


def machine_line(facts: dict[str, Any]) -> str:
    """``machine()``'s facts in one Markdown line: what a result's figures depend on."""
    return (
        f"{facts['cpu']} ({facts['cores']} cores; flags: {', '.join(facts['cpu_flags']) or '–'}; "
        f"ONNX Runtime {facts['onnxruntime']}, OpenVINO {facts.get('openvino') or '–'}; "
        f"{facts['created_at']})"
    )


def write_results(
    folder: Path, results: dict[str, Any], name: str, markdown: Callable[[dict[str, Any]], str]
) -> Path:
    """``<stamp>-<name>.json`` and ``.md`` in ``folder``; prints the Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    stem.with_suffix(".md").write_text(text)
    print("\n" + text)
    step(f"wrote {stem}.json and .md")
    return stem
