"""Parity: the written ONNX file against the torch model it came from, on the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from artifact.card import ModelCard
from artifact.runtime import ModelRuntime
from export.build.serving import ServingModel
from export.errors import ExportError

VERIFY_BATCH = 3
MAX_PROB_DIFF = 1e-4
MAX_FEATURE_REL_DIFF = 1e-3


def check_parity(
    model: ServingModel, onnx_path: Path, card: ModelCard, seed: int = 0
) -> dict[str, float | int]:
    """Run torch and ONNX Runtime (CPU) on one random uint8 batch; fail past the bounds.

    Returns the figures: max |Δ probabilities| and max |Δ features| / max |features|.
    """
    height, width = card.input_size
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 256, size=(VERIFY_BATCH, height, width, 3), dtype=np.uint8)
    with torch.inference_mode():
        torch_probs, torch_feats = (t.numpy() for t in model(torch.from_numpy(batch)))
    # The card is not embedded yet: the runtime is given the one this export will write.
    ort_probs, ort_feats = ModelRuntime(onnx_path, "cpu", card=card, engine="onnxruntime").run(
        batch
    )
    for name, got, want in (
        ("probabilities", ort_probs, torch_probs),
        ("features", ort_feats, torch_feats),
    ):
        if got.shape != want.shape:
            raise ExportError(f"parity: ONNX {name} shape {got.shape} != torch {want.shape}")
    expected = (VERIFY_BATCH, card.num_classes), (VERIFY_BATCH, card.num_features)
    if (ort_probs.shape, ort_feats.shape) != expected:
        raise ExportError(
            f"parity: outputs {ort_probs.shape}, {ort_feats.shape} disagree with the card "
            f"{expected}"
        )
    prob_diff = float(np.max(np.abs(ort_probs - torch_probs)))
    feat_scale = float(np.max(np.abs(torch_feats))) or 1.0
    feat_rel = float(np.max(np.abs(ort_feats - torch_feats))) / feat_scale
    figures: dict[str, float | int] = {
        "batch": VERIFY_BATCH,
        "max_abs_diff_probabilities": prob_diff,
        "max_rel_diff_features": feat_rel,
        "max_abs_features": feat_scale,
        "bound_probabilities": MAX_PROB_DIFF,
        "bound_features": MAX_FEATURE_REL_DIFF,
    }
    if not (prob_diff <= MAX_PROB_DIFF and feat_rel <= MAX_FEATURE_REL_DIFF):
        raise ExportError(
            f"parity check failed: max |Δ probabilities| = {prob_diff:.3g} "
            f"(bound {MAX_PROB_DIFF}), "
            f"max |Δ features| / max |features| = {feat_rel:.3g} (bound {MAX_FEATURE_REL_DIFF})"
        )
    return figures
