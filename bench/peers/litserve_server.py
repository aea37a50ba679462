"""LitServe with its own dynamic batching (up to 4 images, as our CPU default).

The image comes base64 in JSON (``{"image": ...}``), LitServe's own image example: its
process queue cannot carry a multipart upload (the parsed form does not pickle)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np

from bench.peers.common import arguments, load, top5


class Xception(ls.LitAPI):
    def __init__(self, model: Path, engine: str, **options: Any) -> None:
        super().__init__(**options)
        self.model, self.engine = model, engine

    def setup(self, device: str) -> None:
        self.runtime, self.preprocess = load(self.model, self.engine)

    def decode_request(self, request: dict[str, str]) -> np.ndarray:
        return self.preprocess(base64.b64decode(request["image"]), "upload")

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        return self.runtime.run(pixels)[0]

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, probabilities: np.ndarray) -> dict[str, Any]:
        return top5(self.runtime, probabilities)


if __name__ == "__main__":
    args = arguments()
    api = Xception(
        args.model, args.engine, max_batch_size=4, batch_timeout=0.01, api_path="/classify"
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(port=args.port, generate_client_file=False, log_level="warning")
