"""Stage-1 bottleneck features: computed once per (weights, preprocessing, file content).

The cache is a folder of ``.npy`` vectors: ``<cache>/<model key>/<file sha256>.npy``.
The model key hashes every parameter and buffer of the backbone plus the preprocessing,
so changing weights, arch or resize policy can never reuse stale vectors, while
re-running the same export (or renaming files) is instant.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from artifact.batches import pixel_batches
from artifact.preprocess import Preprocessor
from export.build.serving import ServingModel


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xception-export" / "features"


def model_key(model: torch.nn.Module, preprocess: Preprocessor) -> str:
    """Hash of all weights and buffers (names, shapes, bytes) and the preprocessing."""
    digest = hashlib.sha256(repr(preprocess).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def file_key(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FeatureCache:
    """One model key's vectors on disk; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path, key: str) -> None:
        self.folder = root / key
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> np.ndarray | None:
        path = self.folder / f"{key}.npy"
        return np.load(path) if path.is_file() else None

    def put(self, key: str, vector: np.ndarray) -> None:
        tmp = self.folder / f".{key}.{os.getpid()}.tmp.npy"
        np.save(tmp, vector.astype(np.float32))
        tmp.replace(self.folder / f"{key}.npy")


@torch.inference_mode()
def extract(
    model: ServingModel,
    paths: Sequence[Path],
    preprocess: Preprocessor,
    cache: FeatureCache,
    batch_size: int,
    device: torch.device,
) -> tuple[dict[Path, np.ndarray], set[Path], int]:
    """Features for ``paths`` → (vectors by path, unreadable paths, how many were computed)."""
    vectors: dict[Path, np.ndarray] = {}
    unreadable: set[Path] = set()
    todo: dict[Path, str] = {}
    for path in paths:
        key = file_key(path)
        cached = cache.get(key)
        if cached is None:
            todo[path] = key
        else:
            vectors[path] = cached
    model.eval().to(device)
    with tqdm(total=len(todo), desc="bottleneck features", unit="img", disable=not todo) as bar:
        for batch in pixel_batches(list(todo), preprocess, batch_size):
            unreadable.update(batch.skipped)
            if batch.paths:
                _, features = model(torch.from_numpy(batch.pixels).to(device))
                for path, vector in zip(batch.paths, features.cpu().numpy(), strict=True):
                    cache.put(todo[path], vector)
                    vectors[path] = vector
            bar.update(len(batch.paths) + len(batch.skipped))
    return vectors, unreadable, len(todo) - len(unreadable)
