"""The hand-rolled FastAPI script of a user who picked OpenVINO: the model compiled once with
OpenVINO's defaults and the card's precision (bf16 for a bf16 model), one inference request
per HTTP request, in FastAPI's thread pool. The preprocessing is ours (timm's pixels)."""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov
import uvicorn
from fastapi import FastAPI, UploadFile

from artifact.model_file import read_model_file
from artifact.preprocess import Preprocessor
from bench.peers.common import arguments

args = arguments()
card = read_model_file(args.model / "model.onnx").card
precision = "bf16" if card.inference_precision == "bf16" else "f32"
compiled = ov.Core().compile_model(
    str(args.model / "model.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": precision}
)
preprocess = Preprocessor.for_card(card, max_pixels=40_000_000)
app = FastAPI()


@app.post("/classify")
def classify(file: UploadFile) -> dict[str, Any]:
    pixels = preprocess(file.file.read(), file.filename or "")
    probabilities = compiled.create_infer_request().infer({"image": pixels[None]})["probabilities"]
    best = np.argsort(probabilities[0])[::-1][:5]
    return {
        "predictions": [
            {"index": int(i), "label": card.labels[i], "score": float(probabilities[0][i])}
            for i in best
        ]
    }


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
