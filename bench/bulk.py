"""``python -m bench bulk``: ``xception-bulk`` on a local Ray against the single-process
``xception-features`` on the same generated image folder, and both against the raw engine
(ONNX Runtime on decoded batches), measured in the same run; with Ray's object-store peak.
"""

from __future__ import annotations

import argparse
import io
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from artifact.layout import model_file
from artifact.runtime import ModelRuntime
from bench.engine import raw_engine
from bench.report import ROOT, SOURCES, ensure_model, machine, step, write_results
from bulk import features as single_process
from bulk import ray_job


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench bulk", description=__doc__)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "xception" / "1")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--num-cpus", type=int, default=None, help="local Ray CPUs (default all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="raw engine measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return parser.parse_args(argv)


def make_folder(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` JPEGs: random crops of the sample photos at 320–1600 px, as photos come."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(source).convert("RGB") for source in SOURCES]
    for index in range(count):
        photo = photos[index % len(photos)]
        left, top = (int(rng.integers(0, s // 4)) for s in photo.size)
        crop = photo.crop((left, top, photo.size[0] - left // 2, photo.size[1] - top // 2))
        width = int(rng.integers(320, 1600))
        crop = crop.resize((width, max(32, width * crop.size[1] // crop.size[0])))
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=90)
        (folder / f"{index:05d}.jpg").write_bytes(buffer.getvalue())


class PlasmaSampler:
    """Ray's object-store use, sampled while a job runs (the peak is what streaming bounds)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every_s,), daemon=True)

    def __enter__(self) -> PlasmaSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self, every_s: float) -> None:
        import ray
        from ray._private.internal_api import memory_summary

        while not self._stop.wait(every_s):
            if not ray.is_initialized():
                continue
            try:
                found = re.search(r"Plasma memory usage (\d+) MiB", memory_summary(stats_only=True))
            except Exception:  # the cluster is starting or stopping
                continue
            if found:
                self.peak_mib = max(self.peak_mib, float(found.group(1)))


def main(argv: list[str] | None = None) -> int:
    """Generate the folder, run the raw engine, xception-features and xception-bulk on it."""
    options = parse_args(argv)
    model = ensure_model(options.model)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "images"
        folder.mkdir()
        step(f"generating {options.images} JPEGs")
        make_folder(folder, options.images)
        runtime = ModelRuntime(model_file(model), "cpu")
        image = np.zeros((*runtime.card.input_size, 3), np.uint8)
        step("raw engine (decoded batches)")
        (measured,) = raw_engine(runtime, image, [options.batch_size], options.seconds)
        raw = max(measured["images_per_s"], 1e-9)
        del runtime
        step("xception-features (one process)")
        started = time.perf_counter()
        single_process.main([str(folder), "--model", str(model), "--device", "cpu",
                             "--out", str(Path(scratch) / "single.npy")])  # fmt: skip
        single = options.images / (time.perf_counter() - started)
        step("xception-bulk (local Ray)")
        args = [str(folder), "--model", str(model), "--out", str(Path(scratch) / "bulk.parquet"),
                "--device", "cpu", "--batch-size", str(options.batch_size)]  # fmt: skip
        if options.num_cpus:
            args += ["--num-cpus", str(options.num_cpus)]
        started = time.perf_counter()
        with PlasmaSampler() as plasma:
            job = ray_job.run(ray_job.build_parser().parse_args(args))
        bulk = options.images / (time.perf_counter() - started)
    results: dict[str, Any] = {
        "machine": machine(),
        "images": options.images,
        "batch_size": options.batch_size,
        "raw_engine_images_per_s": raw,
        "single_process_images_per_s": single,
        "bulk_images_per_s": bulk,  # Ray's start-up included, as a user waits for it
        "bulk_job_images_per_s": job.written / job.seconds,
        "bulk_actors": job.actors,
        "object_store_peak_mib": plasma.peak_mib,
    }
    write_results(options.out, results, "bulk", markdown)
    return 0


def markdown(results: dict[str, Any]) -> str:
    raw = results["raw_engine_images_per_s"]
    rows = [
        (f"raw engine (decoded, batch {results['batch_size']})", raw),
        ("xception-features, one process", results["single_process_images_per_s"]),
        (f"xception-bulk, local Ray ({results['bulk_actors']} actor(s)), Ray start included",
         results["bulk_images_per_s"]),
        ("xception-bulk, the job alone", results["bulk_job_images_per_s"]),
    ]  # fmt: skip
    lines = [
        f"{results['images']} images, {results['machine']['cores']} cores "
        f"({results['machine']['created_at']}); Ray object store peak "
        f"{results['object_store_peak_mib']:.0f} MiB",
        "",
        "| run | img/s | ÷ raw engine |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {rate:.2f} | {rate / raw:.2f} |" for name, rate in rows]
    return "\n".join(lines) + "\n"
