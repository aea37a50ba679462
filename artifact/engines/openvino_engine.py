"""OpenVINO as a second engine for the same ONNX file: bf16 on CPUs that have it.

ONNX Runtime's CPU provider has no bf16 path; OpenVINO reads our ONNX file as it is and, with
``INFERENCE_PRECISION_HINT=bf16``, runs it in bf16 on CPUs with AVX512_BF16 or AMX. It also
runs fp32 and int8 QDQ files, and on some CPUs faster than ONNX Runtime: the loader measures
both (:mod:`artifact.engines.choice`). It is an optional dependency (the ``openvino`` extra):
nothing imports it unless a model may run on it.

Precision is always set explicitly, and checked after compiling: OpenVINO's CPU plugin
defaults to bf16 on CPUs that have it (which would quietly change the numbers of an fp32 card),
and quietly compiles a bf16 request as f32 where the CPU lacks bf16.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from artifact.card import INPUT_NAME, OUTPUT_NAMES, ModelCard
from artifact.engines import EngineName, EngineOptions
from artifact.errors import ModelLoadError

logger = logging.getLogger(__name__)

# Set to "off" to treat this CPU as one without bf16 (tests; or to keep bf16 off a host).
BF16_ENV = "XCEPTION_CPU_BF16"
ALTERNATIVES = "export with --precision fp32 (or int8) for this CPU"
# The card's inference precision → the name OpenVINO's precision hint takes.
HINTS = {"bf16": "bf16", "fp32": "f32"}
# Streams a batch of two or more images is split over (each with one thread): measured in the
# service on 2 cores, bf16, c=8: +8.5 % img/s and a lower p99 than one two-thread stream
# (docs/performance.md, "Which engine serves").
MAX_STREAMS = 2


def openvino_module() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ModelLoadError(
            "this model runs on OpenVINO, which is not installed: pip install "
            "'xception-service[openvino]' (or set XCEPTION_ENGINE=onnxruntime to run it in fp32)"
        ) from exc
    return openvino


def openvino_installed() -> bool:
    try:
        openvino_module()
    except ModelLoadError:
        return False
    return True


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


def compiled_at(compiled: Any, precision: str) -> bool:
    """Whether OpenVINO's answer for the compiled precision hint (an ``openvino.Type``, whose
    text is ``<Type: 'bfloat16'>``, never "bf16") is the ``precision`` a card asked for."""
    wanted = getattr(openvino_module().Type, HINTS[precision])  # Type.bf16, Type.f32
    return bool(compiled == wanted)


class OpenVinoEngine:
    """One compiled OpenVINO model on the CPU; :meth:`run` is thread-safe (a request per thread)."""

    name: EngineName = "openvino"

    def __init__(self, path: Path, card: ModelCard, options: EngineOptions) -> None:
        """Runs at the card's inference precision."""
        ov = openvino_module()
        if options.device == "cuda":
            raise ModelLoadError(
                f"{path}: OpenVINO runs on the CPU here, and XCEPTION_DEVICE=cuda asks for "
                "the GPU: use XCEPTION_ENGINE=onnxruntime (and an fp32 or fp16 model)"
            )
        core = ov.Core()
        precision = card.inference_precision
        if precision == "bf16":
            has_bf16, reason = cpu_bf16(core)
            if not has_bf16:
                raise ModelLoadError(f"{path} is a bf16 model but {reason}: {ALTERNATIVES}")
        self.config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            "INFERENCE_NUM_THREADS": options.threads,
        }
        try:
            model = core.read_model(str(path))
            # A single image: one stream with every thread (the lowest latency).
            self.latency = self._compile(core, model, card, path, "LATENCY", 1)
            # Two or more: split over streams of one thread each, run at once. OpenVINO's
            # threads wait for each other inside a stream, so a decode thread that takes a
            # core stalls a whole multi-threaded stream but only one single-threaded one.
            streams = min(MAX_STREAMS, options.threads)
            self.split = streams > 1
            self.throughput = (
                self._compile(core, model, card, path, "THROUGHPUT", streams)
                if self.split
                else None
            )
        except ModelLoadError:
            raise
        except Exception as exc:  # OpenVINO's own parse errors: name the file
            raise ModelLoadError(f"cannot load {path} with OpenVINO: {exc}") from exc
        self.config["NUM_STREAMS"] = f"1 (batch 1), {streams} (larger batches, split)"
        # The arithmetic it runs: bf16, or the file's own (fp32, or int8 for a QDQ file).
        self.provider = f"OpenVINO CPU ({'bf16' if precision == 'bf16' else card.precision})"
        self.version = ov.get_version()
        self._local = threading.local()

    def _compile(
        self, core: Any, model: Any, card: ModelCard, path: Path, hint: str, streams: int
    ) -> Any:
        config = {**self.config, "PERFORMANCE_HINT": hint, "NUM_STREAMS": streams}
        compiled = core.compile_model(model, "CPU", config)
        precision = card.inference_precision
        compiled_as = compiled.get_property("INFERENCE_PRECISION_HINT")
        if not compiled_at(compiled_as, precision):
            raise ModelLoadError(
                f"{path} is a {card.precision} model but OpenVINO compiled it as "
                f"{compiled_as.get_type_name()}, not {HINTS[precision]}: "
                + (ALTERNATIVES if precision == "bf16" else "use XCEPTION_ENGINE=onnxruntime")
            )
        return compiled

    def _requests(self) -> tuple[Any, list[Any]]:
        """This thread's inference requests: one on the latency model, one per stream."""
        local = self._local
        if not hasattr(local, "single"):
            local.single = self.latency.create_infer_request()
            local.parts = []
            if self.throughput is not None:
                streams = int(self.throughput.get_property("NUM_STREAMS"))
                local.parts = [self.throughput.create_infer_request() for _ in range(streams)]
        return local.single, local.parts

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        single, parts = self._requests()
        if not self.split or len(images) < 2:
            results = single.infer({INPUT_NAME: images})
            # Copies: the request's output buffers are reused by its next inference.
            return tuple(np.array(results[name]) for name in OUTPUT_NAMES)  # type: ignore[return-value]
        chunks = np.array_split(images, min(len(parts), len(images)))
        for request, chunk in zip(parts, chunks, strict=False):
            request.start_async({INPUT_NAME: np.ascontiguousarray(chunk)})
        used = parts[: len(chunks)]
        for request in used:
            request.wait()
        return tuple(  # type: ignore[return-value]
            np.concatenate([request.get_tensor(name).data for request in used]).copy()
            for name in OUTPUT_NAMES
        )

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "version": self.version,
            "provider": self.provider,
            "config": {key: str(value) for key, value in self.config.items()},
        }
