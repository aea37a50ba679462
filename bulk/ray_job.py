"""``xception-bulk``: top-k labels and features for millions of images on Ray Data.

read (pyarrow filesystems: local, ``s3://``, ``gs://``…) and decode/preprocess in CPU tasks,
with the model's own preprocessing (:mod:`artifact.preprocess`, as the service and
``xception-features`` do it) → ONNX Runtime in a pool of actors (one session each; one GPU
each on CUDA) → Parquet: ``path``, ``labels``, ``scores``, ``features``, ``error`` (a file
that cannot be read or decoded gets its reason there, not a crash). Ray's streaming executor
keeps a bounded number of blocks in flight, so memory does not grow with the collection; a
rerun skips the paths the output already holds. Needs the ``bulk`` extra (Ray, pyarrow).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from artifact.card import ModelCard
from artifact.errors import ImageError, ModelLoadError, was_interrupted
from artifact.layout import CARD_FILE, DEFAULT_MODEL_FOLDER, model_file
from artifact.model_file import read_model_file
from artifact.preprocess import Preprocessor
from artifact.repository import read_card_file
from artifact.results import check_top_k, l2_normalize, top_k
from artifact.runtime import ModelRuntime, available_cores
from bulk.sources import SourceError, done_paths, list_source

Batch = dict[str, Any]


class JobResult(NamedTuple):
    """Rows written, paths skipped as already done, seconds of the job (Ray's start-up not
    included), inference actors used."""

    written: int
    skipped: int
    seconds: float
    actors: int


DECODE_MEMORY_BYTES = 512 * 1024 * 1024
# Decoding + resizing costs ~1/8 of what inference costs per image on a CPU (bench/: ~12 ms
# against ~100 ms per core), so a decode task asks Ray for a fraction of a CPU and every
# inference actor leaves that fraction of its CPUs to them: every core infers, and decoding
# still runs beside it. (Reserving whole CPUs for decoding halved a 2-core machine.)
DECODE_CPU_SHARE = 0.125
# Decoding outruns inference on a CPU, and Ray lets decoded pixels pile up to its own budget,
# a share of the node's object store (measured here: 119 MiB peak for 500 images, 482 MiB for
# 2,000). --buffer-mb caps the job's object-store use (2,000 images: 88 MiB peak at 256,
# 115 MiB at 512), at ~20% of the throughput on 2 cores; 0 leaves Ray's budget (the default).
DEFAULT_BUFFER_MB = 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xception-bulk",
        description="Top-k labels and bottleneck features for every image SOURCE names, on a "
        "Ray cluster (or a local Ray), written as Parquet.",
    )
    add = parser.add_argument
    add("source", metavar="SOURCE", help="a folder, a glob, or a .txt/.parquet list of paths")
    add("--model", type=Path, default=DEFAULT_MODEL_FOLDER,
        help=f"model folder or .onnx file (default {DEFAULT_MODEL_FOLDER})")  # fmt: skip
    add("--out", type=Path, required=True, metavar="OUT.parquet",
        help="output folder of Parquet files; a rerun skips the paths already in it")  # fmt: skip
    add("--address", default=None,
        help="an existing cluster: auto or ray://host:10001 (default: a local Ray)")  # fmt: skip
    add("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise each vector")
    parser.add_argument(
        "--engine", choices=("auto", "onnxruntime", "openvino"), default="auto",
        help="auto: the faster engine that can run the model, measured at load",
    )  # fmt: skip
    add("--actors", type=int, default=None,
        help="inference actors (default: one per GPU; else CPUs ÷ cpus-per-actor)")  # fmt: skip
    add("--buffer-mb", type=int, default=DEFAULT_BUFFER_MB,
        help="cap on the job's object-store use in MiB (default 0: Ray's own budget)")  # fmt: skip
    add("--cpus-per-actor", type=int, default=1,
        help="CPUs (ONNX Runtime threads) per inference actor")  # fmt: skip
    return parser


def model_card(model: Path) -> ModelCard:
    """The card of a model folder (its model.json) or of a bare .onnx file (its metadata)."""
    if model.is_dir() and (model / CARD_FILE).is_file():
        return read_card_file(model)
    return read_model_file(model_file(model)).card


def read_and_preprocess(batch: Batch, card: dict[str, Any]) -> Batch:
    """CPU task: paths → pixels (uint8 [N, H, W, 3]; zeros where ``error`` says why)."""
    import pyarrow.fs

    model = ModelCard.model_validate(card)
    preprocess = Preprocessor.for_local_files(model)
    height, width = model.input_size
    pixels = np.zeros((len(batch["path"]), height, width, 3), np.uint8)
    errors: list[str] = []  # "" = none (a column of only nulls would lose its type)
    for i, path in enumerate(batch["path"]):
        try:
            filesystem, inner = pyarrow.fs.FileSystem.from_uri(_as_uri(str(path)))
            with filesystem.open_input_stream(inner) as stream:
                data = stream.read()
            pixels[i] = preprocess(data, Path(inner).name)
            errors.append("")
        except (ImageError, OSError, ValueError) as exc:  # unreadable or undecodable: recorded
            errors.append(str(exc).strip().splitlines()[0] or type(exc).__name__)
    return {"path": batch["path"], "pixels": pixels, "error": np.array(errors, dtype=str)}


class OptionError(Exception):
    """An option that does not fit the model (``--top-k`` above its class count)."""


class Predictor:
    """Actor: one ONNX Runtime session, run on every batch of readable images."""

    def __init__(
        self,
        model: str,
        device: str,
        engine: str,
        threads: int,
        top_k: int,
        normalize: bool,
        trial_batch: int,
    ) -> None:
        self.runtime = ModelRuntime(
            model_file(Path(model)), device, threads, engine=engine,  # type: ignore[arg-type]
            trial_batch=trial_batch,
        )  # fmt: skip
        self.labels = self.runtime.card.labels
        self.top_k = check_top_k(top_k, self.runtime.card.num_classes)
        self.normalize = normalize

    def __call__(self, batch: Batch) -> Any:
        ok = np.array([not error for error in batch["error"]], dtype=bool)
        count = len(ok)
        labels: list[list[str] | None] = [None] * count
        scores: list[list[float] | None] = [None] * count
        features: list[list[float] | None] = [None] * count
        if ok.any():
            probabilities, vectors = self.runtime.run(np.ascontiguousarray(batch["pixels"][ok]))
            if self.normalize:
                vectors = l2_normalize(vectors)
            for row, index in enumerate(np.flatnonzero(ok)):
                best = top_k(probabilities[row], self.top_k)
                labels[index] = [self.labels[i] for i, _ in best]
                scores[index] = [score for _, score in best]
                features[index] = vectors[row].astype(np.float32).tolist()
        import pyarrow as pa

        # One schema for every block, even one whose files all failed (all-null columns).
        schema = pa.schema([
            ("path", pa.string()), ("labels", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float32())), ("features", pa.list_(pa.float32())),
            ("error", pa.string()),
        ])  # fmt: skip
        errors = [str(error) or None for error in batch["error"]]
        columns = {"path": [str(p) for p in batch["path"]], "labels": labels, "scores": scores,
                   "features": features, "error": errors}  # fmt: skip
        return pa.table(columns, schema=schema)


def run(options: argparse.Namespace) -> JobResult:
    """The job ``options`` (from :func:`build_parser`) describe."""
    import ray

    paths = list_source(options.source)
    done = done_paths(options.out)
    todo = [path for path in paths if path not in done]
    if not todo:
        return JobResult(0, len(paths), 0.0, 0)
    model = str(options.model.resolve())
    checked = model_card(Path(model))  # fails fast, before Ray starts
    try:
        check_top_k(options.top_k, checked.num_classes)
    except ValueError as exc:
        raise OptionError(f"--top-k: {exc}") from exc
    card = checked.model_dump(mode="json")
    if options.address:
        ray.init(address=options.address, log_to_driver=False)
    else:
        ray.init(num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0)) if options.device != "cpu" else 0
        cpus = int(ray.cluster_resources().get("CPU", available_cores()))
        on_gpu = gpus > 0 and options.device in ("auto", "cuda")
        actors = options.actors or (gpus if on_gpu else max(1, cpus // options.cpus_per_actor))
        if options.buffer_mb:
            context = ray.data.DataContext.get_current()
            context.execution_options.resource_limits = ray.data.ExecutionResources(
                object_store_memory=options.buffer_mb * 1024 * 1024
            )
        started = time.perf_counter()
        dataset: ray.data.Dataset = ray.data.from_items([{"path": path} for path in todo])
        decode: Any = read_and_preprocess
        dataset = dataset.map_batches(
            decode,
            fn_kwargs={"card": card},
            batch_size=options.batch_size,
            num_cpus=DECODE_CPU_SHARE,
            # A decode holds one image (up to 40 MP for a local file) at a time. Declaring it
            # also keeps Ray from fusing decoding into the inference actors (their remote
            # arguments differ), so decoding runs beside inference instead of in turn with it.
            memory=DECODE_MEMORY_BYTES,
        )
        settings = {"model": model, "device": "cuda" if on_gpu else "cpu",
                    "engine": options.engine, "threads": options.cpus_per_actor,
                    "top_k": options.top_k, "normalize": options.normalize,
                    "trial_batch": options.batch_size}  # fmt: skip
        dataset = dataset.map_batches(
            Predictor,
            fn_constructor_kwargs=settings,
            batch_size=options.batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=options.cpus_per_actor * (1 - DECODE_CPU_SHARE),
            num_gpus=1 if on_gpu else 0,
        )
        dataset.write_parquet(str(options.out))
        return JobResult(len(todo), len(done), time.perf_counter() - started, actors)
    finally:
        ray.shutdown()


def _as_uri(path: str) -> str:
    """pyarrow wants absolute local paths; URIs (``s3://…``) pass through."""
    return path if "://" in path else str(Path(path).resolve())


def main(argv: list[str] | None = None) -> int:
    """Run the job; one line on stderr and exit 1 for a bad SOURCE, model or missing extra."""
    options = build_parser().parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        if was_interrupted(exc):  # Ctrl-C while Ray's extensions load: not a missing extra
            print("xception-bulk: interrupted", file=sys.stderr)
            return 130
        print('xception-bulk: needs Ray: pip install "xception-service[bulk]"', file=sys.stderr)
        return 1
    try:
        written, skipped, seconds, _ = run(options)
    except (SourceError, ModelLoadError, OptionError) as exc:
        print(f"xception-bulk: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # Ctrl-C, or an error it caused: see was_interrupted
        if not was_interrupted(exc):
            raise
        print("xception-bulk: interrupted", file=sys.stderr)  # the shells' status, no traceback
        return 130
    rate = f" in {seconds:.1f}s ({written / seconds:.1f} img/s)" if written else ""
    print(f"wrote {written} rows to {options.out}{rate}; {skipped} already there, skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
