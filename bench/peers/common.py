"""What every peer shares: the model, its preprocessing, and the top-5 answer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from artifact.model_file import read_model_file
from artifact.preprocess import Preprocessor
from artifact.runtime import EngineSetting, ModelRuntime, available_cores


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True, help="model version folder")
    parser.add_argument("--port", type=int, required=True)
    # The peers that use our runtime run the engine xception-serve chose (bench peers says).
    parser.add_argument("--engine", default="onnxruntime")
    return parser.parse_args()


def preprocessor(model: Path) -> Preprocessor:
    """The model card's preprocessing (a decode-only worker needs no engine)."""
    card = read_model_file(model / "model.onnx").card
    return Preprocessor.for_card(card, max_pixels=40_000_000)


def load(model: Path, engine: str = "onnxruntime") -> tuple[ModelRuntime, Preprocessor]:
    """The model on ``engine`` (as xception-serve chose it), and its preprocessing."""
    setting: EngineSetting = engine  # type: ignore[assignment]
    runtime = ModelRuntime(model / "model.onnx", "cpu", available_cores(), engine=setting)
    return runtime, preprocessor(model)


def top5(runtime: ModelRuntime, probabilities: np.ndarray) -> dict[str, Any]:
    best = np.argsort(probabilities)[::-1][:5]
    labels = runtime.card.labels
    return {
        "predictions": [
            {"index": int(i), "label": labels[i], "score": float(probabilities[i])} for i in best
        ]
    }
