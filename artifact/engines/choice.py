"""Which engine runs a model on this host: the one a setting forces, the only one that can
run the card at its precision, or — where both can — the faster, measured here at load.

The measurement is the loader's first batches: each candidate runs one warm batch, then the
same timed batches in turn (interleaved, so a neighbour's burst of load costs both alike), and
the faster by its best time serves. Nothing is cached: another CPU, or this one under another
thread count, measures again. It costs a few seconds at load (docs/performance.md gives the
figures); the figures stay with the choice for the log, ``/v1/models``, v2 metadata and
``/metrics``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from artifact.card import ModelCard
from artifact.engines import ENGINE_NAMES, Engine, EngineName, EngineOptions
from artifact.errors import ModelLoadError

logger = logging.getLogger(__name__)

EngineSetting = Literal["auto", "onnxruntime", "openvino"]
# Timed rounds after the warm one, and the trial's time after which no further round starts.
TRIAL_ROUNDS = 3
TRIAL_BUDGET_S = 3.0
# The trial's batch is the caller's largest, up to this (a bulk job's 16 would double the cost).
MAX_TRIAL_BATCH = 8


@dataclass(frozen=True)
class EngineChoice:
    """Which engine serves, how it was chosen, and the figures that chose it."""

    engine: EngineName
    how: Literal["forced", "only", "measured"]
    why: str
    images_per_s: dict[EngineName, float] = field(default_factory=dict)
    batch_size: int | None = None
    trial_s: float | None = None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"engine": self.engine, "how": self.how, "why": self.why}
        if self.how == "measured":
            described.update(
                images_per_s={k: round(v, 2) for k, v in self.images_per_s.items()},
                batch_size=self.batch_size,
                trial_s=round(self.trial_s or 0.0, 2),
            )
        return described

    def line(self) -> str:
        if self.how != "measured":
            return f"{self.engine} ({self.why})"
        figures = ", ".join(f"{name} {rate:.2f} img/s" for name, rate in self.images_per_s.items())
        return (
            f"{self.engine}, measured: {figures} at batch {self.batch_size} "
            f"(trial {self.trial_s:.1f}s)"
        )


def candidates(
    card: ModelCard, setting: EngineSetting, device: str
) -> tuple[list[EngineName], str]:
    """The engines that may run ``card`` here, and why only those when there is one."""
    if setting != "auto":
        return [setting], f"XCEPTION_ENGINE={setting}"
    if card.inference_precision == "bf16":
        return ["openvino"], "bf16 runs on OpenVINO only"
    if card.precision == "fp16":
        return ["onnxruntime"], "fp16 runs on ONNX Runtime"
    if device == "cuda":
        return ["onnxruntime"], "XCEPTION_DEVICE=cuda runs on ONNX Runtime"
    from artifact.engines.openvino_engine import openvino_installed

    if not openvino_installed():
        return ["onnxruntime"], "OpenVINO is not installed"
    return list(ENGINE_NAMES), "measured"


def open_engine(name: EngineName, path: Path, card: ModelCard, options: EngineOptions) -> Engine:
    if name == "openvino":
        from artifact.engines.openvino_engine import OpenVinoEngine

        return OpenVinoEngine(path, card, options)
    from artifact.engines.onnxruntime_engine import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, options)


def measure(
    engines: dict[EngineName, Engine], batch: np.ndarray
) -> tuple[dict[EngineName, float], float]:
    """Images per second of each engine on ``batch`` (its best of the timed rounds, after one
    warm run each), and the trial's seconds."""
    started = time.perf_counter()
    for engine in engines.values():
        engine.run(batch)
    best = dict.fromkeys(engines, float("inf"))
    for round_ in range(TRIAL_ROUNDS):
        order = list(engines) if round_ % 2 == 0 else list(reversed(engines))
        for name in order:
            begun = time.perf_counter()
            engines[name].run(batch)
            best[name] = min(best[name], time.perf_counter() - begun)
        if time.perf_counter() - started > TRIAL_BUDGET_S:
            break
    rates = {name: len(batch) / seconds for name, seconds in best.items()}
    return rates, time.perf_counter() - started


def pick(rates: dict[EngineName, float]) -> EngineName:
    """The faster engine; on a tie, the first named (ONNX Runtime)."""
    return max(rates, key=lambda name: rates[name])


def load_engine(
    path: Path,
    card: ModelCard,
    options: EngineOptions,
    setting: EngineSetting = "auto",
    trial_batch: int = 4,
) -> tuple[Engine, EngineChoice]:
    """The engine that runs ``card``'s model here, and how it was chosen."""
    names, why = candidates(card, setting, options.device)
    if len(names) == 1:
        how: Literal["forced", "only"] = "forced" if setting != "auto" else "only"
        return open_engine(names[0], path, card, options), EngineChoice(names[0], how, why)
    engines: dict[EngineName, Engine] = {}
    failures: list[ModelLoadError] = []
    for name in names:
        try:
            engines[name] = open_engine(name, path, card, options)
        except ModelLoadError as exc:
            failures.append(exc)
            continue
        if engines[name].provider == "CUDAExecutionProvider":
            break  # a GPU: OpenVINO would only take the CPU (see below); not even loaded
    if not engines:
        raise failures[0]  # ONNX Runtime's reason: the file itself
    only = next(iter(engines.values()))
    if only.provider == "CUDAExecutionProvider":
        return only, EngineChoice(only.name, "only", "ONNX Runtime runs it on the GPU")
    if failures:
        logger.warning("%s runs on %s only: %s", path, only.name, failures[0])
        return only, EngineChoice(only.name, "only", f"the other engine failed: {failures[0]}")
    height, width = card.input_size
    trial_batch = min(trial_batch, MAX_TRIAL_BATCH)
    pixels = np.random.default_rng(0).integers(0, 256, (trial_batch, height, width, 3), np.uint8)
    rates, trial_s = measure(engines, pixels)
    chosen = pick(rates)
    choice = EngineChoice(chosen, "measured", "faster here", rates, trial_batch, trial_s)
    return engines[chosen], choice
