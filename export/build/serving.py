"""The serving graph: a timm classifier wrapped so the ONNX model takes raw uint8 pixels.

The wrapper owns every per-pixel float operation (cast, scale, mean/std, layout),
so the service only decodes and resizes; and it returns both the class
probabilities and the pooled bottleneck features from one forward pass, so
``/classify`` and ``/features`` requests can share batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class ServingModel(nn.Module):
    """``image`` uint8 [N, H, W, 3] RGB → (``probabilities`` [N, C], ``features`` [N, D]).

    ``mean``/``std`` are the weights' normalisation on the 0..1 scale (timm's
    convention). They are folded into one multiply-add: x * 1/(255·std) − mean/std.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model: Any = model  # timm models: forward_features/forward_head are untyped
        mean_t = torch.tensor(mean, dtype=torch.float32)
        std_t = torch.tensor(std, dtype=torch.float32)
        # Shaped [3] so they broadcast over the channel-last axis before the transpose.
        self.register_buffer("scale", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer("shift", -mean_t / std_t, persistent=False)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC → the float NCHW the backbone was trained on."""
        x = image.to(torch.float32) * self.scale + self.shift
        return x.permute(0, 3, 1, 2)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits (for training; the exported graph returns the softmax)."""
        return self.model(self.normalize(image))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.model.forward_features(self.normalize(image))
        features = self.model.forward_head(feature_map, pre_logits=True)
        if features.ndim == 4:
            # Heads whose pre-logits stage keeps a spatial map (none of timm's common
            # classifiers at eval size, but some at other sizes): pool it ourselves.
            features = features.mean(dim=(2, 3))
        logits = self.model.forward_head(feature_map)
        return torch.softmax(logits, dim=-1), features


def build_serving_model(
    model: nn.Module, mean: Sequence[float], std: Sequence[float]
) -> ServingModel:
    """Wrap ``model`` (put in eval mode) with uint8 preprocessing and both outputs."""
    return ServingModel(model.eval(), mean, std).eval()
