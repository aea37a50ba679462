"""The engine that runs a model: ONNX Runtime (CUDA or CPU) or OpenVINO (CPU, bf16).

:class:`ModelRuntime` is what every caller holds (the service, the bulk tools, the export's
checks): it loads the file and its card, picks the engine — the card's ``engine`` unless
``engine`` forces one — and runs batches. OpenVINO lives in
:mod:`artifact.openvino_engine` and is imported only when a model runs on it.

Provider choice: ``auto`` asks the CUDA driver directly whether a GPU exists before
asking ONNX Runtime for the CUDA EP, so a CPU host logs one calm line instead of the
GPU build's stack of "failed to load library" errors; ``cuda`` refuses to start
without a working CUDA EP; ``cpu`` never tries.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from artifact.card import INPUT_NAME, METADATA_CARD_KEY, OUTPUT_NAMES, ModelCard
from artifact.errors import ModelLoadError

EngineChoice = Literal["auto", "onnxruntime", "openvino"]

logger = logging.getLogger("artifact.runtime")

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"


def available_cores() -> int:
    """Cores this process may run on (the container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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


def card_of(session: ort.InferenceSession, path: Path) -> ModelCard:
    """The card embedded in the model ``session`` runs (an .onnx file from xception-export)."""
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_CARD_KEY)
    if raw is None:
        raise ModelLoadError(
            f"{path} has no '{METADATA_CARD_KEY}' metadata: export it with xception-export"
        )
    try:
        return ModelCard.model_validate(json.loads(raw))
    except ValueError as exc:  # bad JSON, or a card that fails validation
        problem = str(exc).splitlines()[0]
        raise ModelLoadError(f"{path} has an unreadable model card: {problem}") from exc


class ModelRuntime:
    """One model on one engine; :meth:`run` is thread-safe."""

    def __init__(
        self,
        path: Path,
        device: Literal["auto", "cuda", "cpu"] = "auto",
        intra_op_threads: int | None = None,
        spinning: bool = False,
        card: ModelCard | None = None,
        engine: EngineChoice = "auto",
    ) -> None:
        """``intra_op_threads``: default, every core this process may use (the service sets
        its own); ``card``: the card of a model being exported (not yet embedded in the
        file) — by default the card is read from the file's metadata; ``engine``: ``auto``
        runs the card's engine, the others force one for any card."""
        self.path = path
        self._threads = intra_op_threads or available_cores()
        self.session: ort.InferenceSession | None = None
        wanted = engine if engine != "auto" else (card.engine if card else None)
        if wanted == "openvino":
            self._open_openvino(device, card)
            return
        self._open_onnxruntime(device, spinning, card)
        if engine == "auto" and self.card.engine == "openvino":
            # The card asks for OpenVINO: the ORT session only served to read it.
            self.session = None
            self._open_openvino(device, self.card)
            return
        if self.card.inference_precision != "fp32":
            logger.warning(
                "%s is a %s model for OpenVINO; XCEPTION_ENGINE=onnxruntime runs it in fp32 "
                "(the same answers, at fp32 speed)", path, self.card.precision,
            )  # fmt: skip
        self._loaded()

    def _open_openvino(self, device: str, card: ModelCard | None) -> None:
        from artifact.openvino_engine import OpenVinoEngine

        if device == "cuda":
            raise ModelLoadError(
                f"{self.path}: OpenVINO runs on the CPU here, and XCEPTION_DEVICE=cuda asks for "
                "the GPU: use XCEPTION_ENGINE=onnxruntime (and an fp32 or fp16 model)"
            )
        engine = OpenVinoEngine(self.path, self._threads, card)
        self.card, self.provider, self._run = engine.card, engine.provider, engine.run
        self._loaded()

    def _open_onnxruntime(self, device: str, spinning: bool, card: ModelCard | None) -> None:
        path = self.path
        providers = self._providers(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self._threads
        # Memory patterns are planned per input shape; the batcher makes many batch sizes,
        # and mixing their patterns fragments the arena (RSS +45% under load, measured).
        # Without them: RSS flat after warm-up, and no slower (bench/, docs/performance.md).
        options.enable_mem_pattern = False
        # Busy-waiting ORT threads steal the cores that decode and HTTP need between runs.
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT says "invalid protobuf" etc.: name the file instead
            raise ModelLoadError(f"cannot load {path}: {exc}") from exc
        self.card = card if card is not None else card_of(self.session, path)
        self.provider = self.session.get_providers()[0]
        if CUDA_EP in providers and self.provider != CUDA_EP and device == "auto":
            logger.warning(
                "a GPU is present but the CUDA execution provider did not initialise (see "
                "ONNX Runtime's message above: CUDA 13 / cuDNN 9 libraries?): using %s",
                self.provider,
            )
        if device == "cuda" and self.provider != CUDA_EP:
            raise ModelLoadError(
                "XCEPTION_DEVICE=cuda but ONNX Runtime could not create the CUDA execution "
                "provider (see its log above: CUDA 13 / cuDNN 9 libraries?)"
            )
        self._check_signature(self.session)
        self._run = self._run_onnxruntime

    def _loaded(self) -> None:
        logger.info(
            "loaded %s (%s, %s) on %s, %d intra-op threads",
            self.path, self.card.arch, self.card.precision, self.provider, self._threads,
        )  # fmt: skip
        if self.card.weights == "none":  # a try-out or a test model must not pass for real
            logger.warning(
                "%s has random weights (exported with --weights none): its predictions and "
                "features mean nothing", self.path,
            )  # fmt: skip

    @staticmethod
    def _providers(device: str) -> list[str]:
        if device == "cpu":
            logger.info("XCEPTION_DEVICE=cpu: using %s", CPU_EP)
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

    def _check_signature(self, session: ort.InferenceSession) -> None:
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != [INPUT_NAME] or tuple(outputs) != OUTPUT_NAMES:
            raise ModelLoadError(
                f"{self.path}: inputs {inputs} / outputs {outputs} are not the serving contract "
                f"([{INPUT_NAME!r}] / {list(OUTPUT_NAMES)})"
            )

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, 3] → (probabilities [N, C], features [N, D])."""
        return self._run(images)

    def _run_onnxruntime(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.session is not None
        probabilities, features = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return probabilities, features

    def warm_up(self, batch_sizes: Iterable[int]) -> dict[int, float]:
        """Run each batch size once (allocations, kernel selection); returns seconds per size."""
        height, width = self.card.input_size
        timings = {}
        for size in batch_sizes:
            started = time.perf_counter()
            self.run(np.zeros((size, height, width, 3), dtype=np.uint8))
            timings[size] = time.perf_counter() - started
        return timings

    @staticmethod
    def warm_up_sizes(max_batch_size: int) -> list[int]:
        """Every batch size the batcher may form: cuDNN picks algorithms per shape, and
        ORT's CPU arena grows per shape — after warm-up, memory stays flat."""
        return list(range(1, max_batch_size + 1))
