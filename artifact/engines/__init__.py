"""The engines a model can run on, each one class behind :class:`Engine`.

- :mod:`artifact.engines.onnxruntime_engine`: ONNX Runtime, on CUDA or the CPU (fp32, int8
  QDQ, fp16 on CUDA).
- :mod:`artifact.engines.openvino_engine`: OpenVINO on the CPU (fp32, int8 QDQ, and bf16 on
  CPUs with AVX512_BF16 or AMX); imported only when used (the ``openvino`` extra).
- :mod:`artifact.engines.choice`: which of them may run a card, and the measured choice
  between them on this host.

Every engine is given the card, already read (:mod:`artifact.model_file`): none reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

EngineName = Literal["onnxruntime", "openvino"]
ENGINE_NAMES: tuple[EngineName, ...] = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class EngineOptions:
    """How to run: ``device`` (ONNX Runtime's CUDA or CPU), the intra-op ``threads``, and
    whether ONNX Runtime's idle threads may busy-wait (``spinning``)."""

    device: Literal["auto", "cuda", "cpu"] = "auto"
    threads: int = 1
    spinning: bool = False


class Engine(Protocol):
    """One loaded model on one engine. ``run`` is thread-safe."""

    name: EngineName
    # What runs it, as the logs, /v1/models and the batching defaults name it.
    provider: str

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, 3] → (probabilities [N, C], features [N, D])."""
        ...

    def describe(self) -> dict[str, Any]:
        """The engine's name, version, provider and the options it was compiled with."""
        ...
