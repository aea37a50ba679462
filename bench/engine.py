"""What the service is compared with: ONNX Runtime alone, and the cost of decoding.

The raw engine gets already-decoded uint8 batches and the same session options the
service uses (same provider, same thread count), so the ratio isolates what HTTP,
multipart parsing, decoding and batching cost.
"""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime

# Upload sizes (width, height): phone-ish photos down to thumbnails, all real JPEG pixels.
UPLOAD_SIZES = ((320, 240), (640, 480), (1024, 768), (1600, 1200))


def make_uploads(sources: list[Path]) -> list[tuple[str, bytes]]:
    """Real photos re-encoded as JPEG (quality 90) at several sizes."""
    uploads = []
    for source in sources:
        image = Image.open(source).convert("RGB")
        for width, height in UPLOAD_SIZES:
            buffer = io.BytesIO()
            image.resize((width, height), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
            uploads.append((f"{source.stem}-{width}x{height}.jpg", buffer.getvalue()))
    return uploads


def decode_cost(preprocess: Preprocessor, uploads: list[tuple[str, bytes]], rounds: int) -> dict:
    """Median milliseconds to decode + resize one upload, per upload size."""
    per_size: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, data in uploads:
            started = time.perf_counter()
            preprocess(data, name)
            per_size.setdefault(name.rsplit("-", 1)[1], []).append(time.perf_counter() - started)
    medians = {size: 1000 * statistics.median(times) for size, times in per_size.items()}
    return {"ms_per_image": medians, "ms_mean": statistics.mean(medians.values())}


def raw_engine(
    runtime: ModelRuntime, image: np.ndarray, batch_sizes: list[int], seconds: float
) -> list[dict]:
    """img/s and per-batch latency at each batch size, each measured for ``seconds``."""
    rows = []
    for size in batch_sizes:
        batch = np.ascontiguousarray(np.broadcast_to(image, (size, *image.shape)))
        runtime.run(batch)  # this shape's first run allocates
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(latencies) < 3:
            started = time.perf_counter()
            runtime.run(batch)
            latencies.append(time.perf_counter() - started)
        total = sum(latencies)
        rows.append(
            {
                "batch_size": size,
                "images_per_s": size * len(latencies) / total,
                "batch_ms_p50": 1000 * float(np.percentile(latencies, 50)),
                "runs": len(latencies),
            }
        )
    return rows
