"""A model's rows as answers: the k best classes, unit-length feature vectors."""

from __future__ import annotations

import numpy as np


def top_k(probabilities: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(index, score) of the k largest probabilities, descending (ties: lower index first)."""
    k = min(k, probabilities.shape[0])
    candidates = np.argpartition(-probabilities, k - 1)[:k]
    order = sorted(candidates.tolist(), key=lambda i: (-float(probabilities[i]), i))
    return [(int(i), float(probabilities[i])) for i in order]


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Unit-length vector (a zero vector stays zero)."""
    norm = float(np.linalg.norm(features))
    return features / norm if norm > 0 else features
