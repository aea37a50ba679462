"""Folder → pixels, in batches: the one preprocess-or-skip loop every offline tool uses.

``xception-features``, fine-tuning's bottleneck features, int8 calibration and the
test-split evaluation all read files with the same :class:`~artifact.preprocess.Preprocessor`
and skip the same unreadable files, so the same folder gives the same pixels everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from artifact.errors import ImageError
from artifact.runtime import ModelRuntime, available_cores


class PixelBatch(NamedTuple):
    """One batch: the readable paths, their pixels (uint8 [N, H, W, 3]), the skipped paths."""

    paths: list[Path]
    pixels: np.ndarray
    skipped: list[Path]


def pixel_batches(
    paths: Sequence[Path],
    preprocess: Callable[[bytes, str], np.ndarray],
    batch_size: int,
    workers: int | None = None,
) -> Iterator[PixelBatch]:
    """Decode ``paths`` in order, ``batch_size`` at a time (in ``workers`` threads: Pillow
    releases the GIL); files that raise an :class:`~artifact.errors.ImageError` are skipped."""

    def load(path: Path) -> np.ndarray | None:
        try:
            return preprocess(path.read_bytes(), path.name)
        except ImageError:
            return None

    with ThreadPoolExecutor(workers or available_cores()) as pool:
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start : start + batch_size])
            decoded = list(pool.map(load, chunk))
            kept = [(p, x) for p, x in zip(chunk, decoded, strict=True) if x is not None]
            yield PixelBatch(
                paths=[p for p, _ in kept],
                pixels=np.stack([x for _, x in kept]) if kept else np.zeros((0,), np.uint8),
                skipped=[p for p, x in zip(chunk, decoded, strict=True) if x is None],
            )


def run_folder(
    runtime: ModelRuntime,
    paths: Sequence[Path],
    preprocess: Callable[[bytes, str], np.ndarray],
    batch_size: int,
    progress: Callable[[int], object] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Path], list[Path]]:
    """ONNX Runtime over ``paths`` → (probabilities [N, C], features [N, D], paths kept,
    paths skipped as unreadable); ``progress(n)`` is called after each batch of n files."""
    probabilities, features, kept, skipped = [], [], [], []
    for batch in pixel_batches(paths, preprocess, batch_size):
        if batch.paths:
            probs, feats = runtime.run(batch.pixels)
            probabilities.append(probs)
            features.append(feats)
            kept += batch.paths
        skipped += batch.skipped
        if progress is not None:
            progress(len(batch.paths) + len(batch.skipped))
    card = runtime.card
    return (
        np.concatenate(probabilities) if kept else np.zeros((0, card.num_classes), np.float32),
        np.concatenate(features) if kept else np.zeros((0, card.num_features), np.float32),
        kept,
        skipped,
    )
