"""``xception-features``: bottleneck features for a folder of images, to .npy or .parquet.

The Keras write-up's ``bottleneck_features_train.npy`` step as a tool: ONNX Runtime on
the exported model, the model's own preprocessing (:mod:`artifact.preprocess`, as the
service does it), batched, with a progress bar. Needs no torch: it runs wherever the
service runs. Parquet output needs pyarrow (``pip install "xception-service[parquet]"``).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from artifact.batches import run_folder
from artifact.errors import ModelLoadError, was_interrupted
from artifact.images import list_images
from artifact.layout import DEFAULT_MODEL_FOLDER, MODEL_FILE, model_file
from artifact.preprocess import Preprocessor
from artifact.results import l2_normalize
from artifact.runtime import ModelRuntime, available_cores


class FeaturesError(Exception):
    """A user error: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xception-features",
        description="Extract bottleneck features (e.g. 2048-d for Xception) for every image "
        "under DIR with an exported model; writes the vectors and their file paths.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="folder of images (recursive)")
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL_FOLDER,
        help=f"model folder or .onnx file (default {DEFAULT_MODEL_FOLDER})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="FILE.npy (+ FILE.paths.txt beside it) or FILE.parquet (columns path, features)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise each vector")
    parser.add_argument(
        "--engine", choices=("auto", "onnxruntime", "openvino"), default="auto",
        help="auto: the faster engine that can run the model, measured at load",
    )  # fmt: skip
    return parser


class _LineTrackingStream:
    """stderr as the progress bar writes to it, remembering whether the last write ended its
    line: a Ctrl-C can land after the bar is drawn and before its closing newline, and the
    bar is no longer open for ``tqdm.write`` to clear by then. (``sys.stderr`` as it is at
    each write: a caller may have replaced it.)"""

    at_line_start = True

    def write(self, text: str) -> int:
        if text:
            self.at_line_start = text[-1] in "\r\n"
        return sys.stderr.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding
        return getattr(sys.stderr, name)


PROGRESS = _LineTrackingStream()


def find_images(root: Path) -> list[Path]:
    """Image files under ``root``; a :class:`FeaturesError` when there are none."""
    if not root.is_dir():
        raise FeaturesError(f"DIR {str(root)!r}: no such folder")
    found = list_images(root)
    if not found:
        raise FeaturesError(f"DIR {str(root)!r}: no image files found")
    return found


def extract(
    runtime: ModelRuntime, paths: list[Path], batch_size: int
) -> tuple[np.ndarray, list[Path], list[Path]]:
    """(features [N, D], paths kept, paths skipped as unreadable)."""
    preprocess = Preprocessor.for_local_files(runtime.card)
    with tqdm(total=len(paths), desc="features", unit="img", file=PROGRESS) as bar:
        _, features, kept, skipped = run_folder(
            runtime, paths, preprocess, batch_size, progress=bar.update
        )
    return features.astype(np.float32), kept, skipped


def write(out: Path, features: np.ndarray, paths: list[str]) -> list[Path]:
    """Write atomically (temp file + rename); returns the files written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        listing = out.with_suffix(".paths.txt")
        tmp = out.with_name(f".{out.stem}.tmp.npy")
        np.save(tmp, features)
        tmp.replace(out)
        listing.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
        return [out, listing]
    import pyarrow as pa  # checked by main() before any work
    import pyarrow.parquet as pq

    column = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), features.shape[1])
    table = pa.table({"path": pa.array(paths, pa.string()), "features": column})
    tmp = out.with_name(f".{out.stem}.tmp.parquet")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return [out]


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success, 1 with one line on a user error."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level="WARNING")
    try:
        if args.out.suffix not in (".npy", ".parquet"):
            raise FeaturesError(f"--out {str(args.out)!r}: use a .npy or .parquet file name")
        if args.out.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
            raise FeaturesError(
                f"--out {str(args.out)!r}: writing Parquet needs pyarrow "
                '(pip install "xception-service[parquet]"); or write a .npy file'
            )
        paths = find_images(args.dir)
        model = model_file(args.model)
        if not model.is_file():
            raise FeaturesError(f"--model {str(args.model)!r}: no {MODEL_FILE} there")
        runtime = ModelRuntime(
            model, args.device, available_cores(), engine=args.engine,
            trial_batch=args.batch_size,
        )  # fmt: skip
        started = time.perf_counter()
        features, kept, skipped = extract(runtime, paths, args.batch_size)
        elapsed = time.perf_counter() - started
        if args.normalize and len(features):
            features = l2_normalize(features)
        written = write(args.out, features, [str(p.relative_to(args.dir)) for p in kept])
    except (FeaturesError, ModelLoadError) as exc:
        print(f"xception-features: error: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # Ctrl-C, or an error it caused: see was_interrupted
        if not was_interrupted(exc):
            raise
        # On a line of its own wherever the Ctrl-C came: tqdm.write clears a bar still open;
        # one that closed half-way left its line unended.
        if not PROGRESS.at_line_start:
            sys.stderr.write("\n")
        tqdm.write("xception-features: interrupted", file=sys.stderr)  # the shells' 130
        return 130
    print(
        f"wrote {len(kept)} × {features.shape[1]} features to {', '.join(map(str, written))} "
        f"({len(kept) / elapsed:.1f} img/s on {runtime.provider}); "
        f"{len(skipped)} unreadable skipped"
        + (f": {', '.join(str(p) for p in skipped[:5])}" if skipped else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
