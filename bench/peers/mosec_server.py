"""Mosec: a Rust HTTP front with Python worker processes and dynamic batching, the
throughput-minded peer. Two stages as its image examples: decode + resize workers (one per
core), then one inference worker batching up to 4 images (our CPU default) within 10 ms, on
the same engine as xception-serve. The image is the raw request body to ``/inference``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from mosec import Server, Worker

from artifact.runtime import available_cores
from bench.peers.common import arguments, load, preprocessor, top5

MODEL_ENV, ENGINE_ENV = "PEER_MODEL", "PEER_ENGINE"


class Decode(Worker):
    def __init__(self) -> None:
        super().__init__()
        self.preprocess = preprocessor(Path(os.environ[MODEL_ENV]))

    def deserialize(self, data: bytes) -> bytes:  # the body is the image itself
        return data

    def forward(self, data: bytes) -> np.ndarray:
        return self.preprocess(data, "upload")


class Infer(Worker):
    def __init__(self) -> None:
        super().__init__()
        self.runtime, _ = load(Path(os.environ[MODEL_ENV]), os.environ[ENGINE_ENV])

    def forward(self, data: list[np.ndarray]) -> list[dict[str, Any]]:
        probabilities, _ = self.runtime.run(np.stack(data))
        return [top5(self.runtime, row) for row in probabilities]


if __name__ == "__main__":
    args = arguments()
    os.environ[MODEL_ENV], os.environ[ENGINE_ENV] = str(args.model), args.engine
    # Mosec reads its own flags from sys.argv.
    sys.argv = [sys.argv[0], "--port", str(args.port), "--address", "127.0.0.1",
                "--timeout", "30000", "--log-level", "warning"]  # fmt: skip
    server = Server()
    server.append_worker(Decode, num=available_cores())
    server.append_worker(Infer, num=1, max_batch_size=4, max_wait_time=10)
    server.run()
