"""A model's outputs as answers: the k best classes, unit-length feature vectors.

One ranking rule and one normalisation for everything that answers: the service's endpoints
and both bulk tools.
"""

from __future__ import annotations

import numpy as np


def top_k(probabilities: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(index, score) of the k largest probabilities, descending (ties: lower index first)."""
    k = min(k, probabilities.shape[0])
    candidates = np.argpartition(-probabilities, k - 1)[:k]
    order = sorted(candidates.tolist(), key=lambda i: (-float(probabilities[i]), i))
    return [(int(i), float(probabilities[i])) for i in order]


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Unit length along the last axis (one vector, or a row per image); zero stays zero."""
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.where(norms > 0, norms, 1).astype(features.dtype)
