"""The model a caller runs: its card, read once, and the engine chosen for it here.

:class:`ModelRuntime` is what every caller holds (the service, the bulk tools, the export's
checks). It reads the file's card and signature without starting an engine
(:mod:`artifact.model_file`), then loads the engine :mod:`artifact.engines.choice` picks — the
one forced, the only one that can run the card, or the faster one measured on this host — and
runs batches on it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from artifact.card import ModelCard
from artifact.engines import Engine, EngineOptions
from artifact.engines.choice import EngineChoice, EngineSetting, load_engine
from artifact.engines.onnxruntime_engine import CPU_EP, CUDA_EP, cuda_device_count
from artifact.model_file import read_model_file

__all__ = [
    "CPU_EP",
    "CUDA_EP",
    "EngineSetting",
    "ModelRuntime",
    "available_cores",
    "cuda_device_count",
]

logger = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may run on (the container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class ModelRuntime:
    """One model on one engine; :meth:`run` is thread-safe."""

    def __init__(
        self,
        path: Path,
        device: Literal["auto", "cuda", "cpu"] = "auto",
        intra_op_threads: int | None = None,
        spinning: bool = False,
        card: ModelCard | None = None,
        engine: EngineSetting = "auto",
        trial_batch: int = 4,
    ) -> None:
        """``intra_op_threads``: default, every core this process may use (the service sets
        its own); ``card``: the card of a model being exported (not yet embedded in the
        file) — by default the file's own; ``engine``: ``auto`` lets the loader choose
        (measuring at ``trial_batch`` images where two engines can run the card), the others
        force one for any card."""
        self.path = path = Path(path)
        self.card = read_model_file(path, card).card
        self._threads = intra_op_threads or available_cores()
        options = EngineOptions(device=device, threads=self._threads, spinning=spinning)
        self.engine: Engine
        self.choice: EngineChoice
        # Said first: with engine auto the load times both engines (seconds on a small CPU).
        logger.info(
            "loading %s (%s, %s): device %s, engine %s", path, self.card.arch,
            self.card.precision, device, engine,
        )  # fmt: skip
        self.engine, self.choice = load_engine(path, self.card, options, engine, trial_batch)
        self.provider = self.engine.provider
        if self.card.inference_precision != "fp32" and self.engine.name != "openvino":
            logger.warning(
                "%s is a %s model for OpenVINO; XCEPTION_ENGINE=onnxruntime runs it in fp32 "
                "(the same answers, at fp32 speed)", path, self.card.precision,
            )  # fmt: skip
        logger.info(
            "loaded %s (%s, %s) on %s, %d intra-op threads; engine: %s",
            path, self.card.arch, self.card.precision, self.provider, self._threads,
            self.choice.line(),
        )  # fmt: skip
        if self.card.weights == "none":  # a try-out or a test model must not pass for real
            logger.warning(
                "%s has random weights (exported with --weights none): its predictions and "
                "features mean nothing", path,
            )  # fmt: skip

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, 3] → (probabilities [N, C], features [N, D])."""
        return self.engine.run(images)

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
