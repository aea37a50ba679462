"""A model's outputs as answers: the k best classes, unit-length feature vectors.

One ranking rule and one normalisation for everything that answers: the service's endpoints
and both bulk tools.
"""

from __future__ import annotations

import numpy as np


def check_top_k(k: int, num_classes: int) -> int:
    """``k`` when it is between 1 and ``num_classes``; else ValueError naming the range.

    Never clamped: a client asking a 3-class model for its top 5 has a mistake worth hearing
    about, and every protocol and tool answers it the same way."""
    if not 1 <= k <= num_classes:
        raise ValueError(f"top_k={k} must be between 1 and {num_classes} (the model's classes)")
    return k


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
