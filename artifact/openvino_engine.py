"""OpenVINO as a second engine for the same ONNX file: bf16 on CPUs that have it.

ONNX Runtime's CPU provider has no bf16 path; OpenVINO reads our ONNX file as it is and, with
``INFERENCE_PRECISION_HINT=bf16``, runs it in bf16 on CPUs with AVX512_BF16 or AMX (about 2×
fp32 measured on a Zen 4-class cloud CPU). It is an optional dependency (the ``openvino``
extra): cards that do not ask for it never import it.

Precision is always set explicitly: OpenVINO's CPU plugin defaults to bf16 on CPUs that have
it, which would quietly change the numbers of an fp32 card forced onto this engine.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from artifact.card import INPUT_NAME, METADATA_CARD_KEY, OUTPUT_NAMES, ModelCard
from artifact.errors import ModelLoadError

logger = logging.getLogger("artifact.runtime")

# Set to "off" to treat this CPU as one without bf16 (tests; or to keep bf16 off a host).
BF16_ENV = "XCEPTION_CPU_BF16"
ALTERNATIVES = "export with --precision fp32 (or int8) for this CPU"


def openvino_module() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ModelLoadError(
            "this model runs on OpenVINO, which is not installed: pip install "
            "'xception-service[openvino]' (or set XCEPTION_ENGINE=onnxruntime to run it in fp32)"
        ) from exc
    return openvino


def cpu_bf16(core: Any | None = None) -> tuple[bool, str]:
    """Whether this CPU runs bf16 natively, as OpenVINO's CPU plugin reports it, and why."""
    if os.environ.get(BF16_ENV, "auto").lower() == "off":
        return False, f"bf16 is turned off here ({BF16_ENV}=off)"
    core = core or openvino_module().Core()
    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" in capabilities:
        return True, "the CPU has bf16"
    return False, (
        f"this CPU has no bf16 (no AVX512_BF16 or AMX; OpenVINO's CPU capabilities: "
        f"{', '.join(capabilities)})"
    )


class OpenVinoEngine:
    """One compiled OpenVINO model on the CPU; :meth:`run` is thread-safe (a request per thread)."""

    def __init__(self, path: Path, threads: int, card: ModelCard | None = None) -> None:
        """Runs at the card's inference precision (``card``: by default the file's own)."""
        ov = openvino_module()
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO's own parse errors: name the file
            raise ModelLoadError(f"cannot load {path} with OpenVINO: {exc}") from exc
        self.card = card if card is not None else _card_of(model, path)
        precision = self.card.inference_precision
        if precision == "bf16":
            has_bf16, reason = cpu_bf16(core)
            if not has_bf16:
                raise ModelLoadError(f"{path} is a bf16 model but {reason}: {ALTERNATIVES}")
        inputs = [port.get_any_name() for port in model.inputs]
        outputs = [port.get_any_name() for port in model.outputs]
        if inputs != [INPUT_NAME] or tuple(outputs) != OUTPUT_NAMES:
            raise ModelLoadError(
                f"{path}: inputs {inputs} / outputs {outputs} are not the serving contract"
            )
        self.compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": threads,
                # One stream: the batcher sends one batch at a time and wants all the cores.
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        # OpenVINO quietly compiles a bf16 request as f32 where the CPU lacks bf16: ask it.
        compiled_as = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        if precision == "bf16" and "bf16" not in compiled_as:
            raise ModelLoadError(
                f"{path} is a bf16 model but OpenVINO compiled it as {compiled_as}: {ALTERNATIVES}"
            )
        # The arithmetic it runs: bf16, or the file's own (fp32, or int8 for a QDQ file).
        self.provider = f"OpenVINO CPU ({'bf16' if precision == 'bf16' else self.card.precision})"
        self._local = threading.local()

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        results = request.infer({INPUT_NAME: images})
        # Copies: the request's output buffers are reused by its next inference.
        return tuple(np.array(results[name]) for name in OUTPUT_NAMES)  # type: ignore[return-value]


def _card_of(model: Any, path: Path) -> ModelCard:
    try:
        raw = model.get_rt_info(["framework", METADATA_CARD_KEY]).astype(str)
    except Exception as exc:  # no such key
        raise ModelLoadError(
            f"{path} has no '{METADATA_CARD_KEY}' metadata: export it with xception-export"
        ) from exc
    try:
        return ModelCard.model_validate(json.loads(raw))
    except ValueError as exc:
        raise ModelLoadError(f"{path} has an unreadable model card: {exc}") from exc
