"""ONNX Runtime: the CUDA execution provider when there is a GPU, the CPU one otherwise.

Provider choice: ``auto`` asks the CUDA driver directly whether a GPU exists before asking
ONNX Runtime for the CUDA EP, so a CPU host logs one calm line instead of the GPU build's
stack of "failed to load library" errors; ``cuda`` refuses to start without a working CUDA
EP; ``cpu`` never tries.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from artifact.card import INPUT_NAME, OUTPUT_NAMES
from artifact.engines import EngineName, EngineOptions
from artifact.errors import ModelLoadError

logger = logging.getLogger(__name__)

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"


def cuda_device_count() -> tuple[int, str]:
    """GPUs the CUDA driver sees, with the reason when none (no ORT involved, no noise)."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0, "no NVIDIA driver (libcuda.so.1 not found)"
    if libcuda.cuInit(0) != 0:
        return 0, "the NVIDIA driver failed to initialise (cuInit)"
    count = ctypes.c_int(0)
    if libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return 0, "the NVIDIA driver sees no GPU"
    return count.value, f"{count.value} GPU(s)"


def providers_for(device: str) -> list[str]:
    """The execution providers to ask ONNX Runtime for, most wanted first."""
    if device == "cpu":
        return [CPU_EP]
    if CUDA_EP not in ort.get_available_providers():
        if device == "cuda":
            raise ModelLoadError(
                "XCEPTION_DEVICE=cuda but this ONNX Runtime build has no CUDA execution "
                "provider (install onnxruntime-gpu)"
            )
        logger.info("this ONNX Runtime build has no CUDA EP: using %s", CPU_EP)
        return [CPU_EP]
    count, reason = cuda_device_count()
    if count == 0:
        if device == "cuda":
            raise ModelLoadError(f"XCEPTION_DEVICE=cuda but {reason}")
        logger.info("CUDA not available (%s): using %s", reason, CPU_EP)
        return [CPU_EP]
    if hasattr(ort, "preload_dlls"):
        # Loads CUDA/cuDNN from the nvidia-* pip wheels when those are what is installed.
        ort.preload_dlls()
    return [CUDA_EP, CPU_EP]


class OnnxRuntimeEngine:
    """One ONNX Runtime session; :meth:`run` is thread-safe (ORT sessions are)."""

    name: EngineName = "onnxruntime"

    def __init__(self, path: Path, options: EngineOptions) -> None:
        providers = providers_for(options.device)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = options.threads
        # Memory patterns are planned per input shape; the batcher makes many batch sizes,
        # and mixing their patterns fragments the arena (RSS +45% under load, measured).
        # Without them: RSS flat after warm-up, and no slower (bench/, docs/performance.md).
        session_options.enable_mem_pattern = False
        # Busy-waiting ORT threads steal the cores that decode and HTTP need between runs.
        session_options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if options.spinning else "0"
        )
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(path), session_options, providers=providers)
        except Exception as exc:  # ORT says "invalid protobuf" etc.: name the file instead
            raise ModelLoadError(f"cannot load {path}: {exc}") from exc
        self.provider = self.session.get_providers()[0]
        self.threads = options.threads
        if CUDA_EP in providers and self.provider != CUDA_EP and options.device == "auto":
            logger.warning(
                "a GPU is present but the CUDA execution provider did not initialise (see "
                "ONNX Runtime's message above: CUDA 13 / cuDNN 9 libraries?): using %s",
                self.provider,
            )
        if options.device == "cuda" and self.provider != CUDA_EP:
            raise ModelLoadError(
                "XCEPTION_DEVICE=cuda but ONNX Runtime could not create the CUDA execution "
                "provider (see its log above: CUDA 13 / cuDNN 9 libraries?)"
            )

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, features = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return probabilities, features

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "version": ort.__version__,
            "provider": self.provider,
            "intra_op_threads": self.threads,
        }
