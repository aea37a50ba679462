"""What every peer shares: the model, its preprocessing, and the top-5 answer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime, available_cores


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True, help="model version folder")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args()


def load(model: Path) -> tuple[ModelRuntime, Preprocessor]:
    runtime = ModelRuntime(model / "model.onnx", "cpu", available_cores(), engine="onnxruntime")
    return runtime, Preprocessor.for_card(runtime.card, max_pixels=40_000_000)


def top5(runtime: ModelRuntime, probabilities: np.ndarray) -> dict[str, Any]:
    best = np.argsort(probabilities)[::-1][:5]
    labels = runtime.card.labels
    return {
        "predictions": [
            {"index": int(i), "label": labels[i], "score": float(probabilities[i])} for i in best
        ]
    }
