"""The hand-rolled FastAPI script: one ONNX Runtime call per request, in FastAPI's thread pool."""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI, UploadFile

from bench.peers.common import arguments, load, top5

args = arguments()
runtime, preprocess = load(args.model)  # ONNX Runtime, as its name says
app = FastAPI()


@app.post("/classify")
def classify(file: UploadFile) -> dict[str, Any]:
    pixels = preprocess(file.file.read(), file.filename or "")
    probabilities, _ = runtime.run(pixels[None])
    return top5(runtime, probabilities[0])


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
