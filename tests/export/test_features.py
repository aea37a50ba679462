"""The bottleneck-feature cache key: a change of weights, buffers or preprocessing is a new key."""

from __future__ import annotations

import copy

import timm
import torch

from artifact.card import ResizePolicy
from artifact.preprocess import Preprocessor
from export.finetune.features import model_key

CROP = ResizePolicy(mode="crop", crop_pct=0.875, interpolation="bicubic")


def test_cache_key_follows_weights_buffers_and_preprocessing() -> None:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False)
    preprocess = Preprocessor.for_policy((64, 64), CROP, 1_000_000)
    key = model_key(model, preprocess)
    assert model_key(copy.deepcopy(model), preprocess) == key  # same weights: same key

    nudged = copy.deepcopy(model)
    with torch.no_grad():
        next(nudged.parameters()).view(-1)[0] += 1e-3
    assert model_key(nudged, preprocess) != key

    recalibrated = copy.deepcopy(model)
    norm = next(m for m in recalibrated.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert norm.running_mean is not None
    norm.running_mean.add_(0.5)  # a buffer, not a parameter: still the model's behaviour
    assert model_key(recalibrated, preprocess) != key

    squash = ResizePolicy(mode="squash", crop_pct=0.875, interpolation="bicubic")
    assert model_key(model, Preprocessor.for_policy((64, 64), squash, 1_000_000)) != key
    bilinear = ResizePolicy(mode="crop", crop_pct=0.875, interpolation="bilinear")
    assert model_key(model, Preprocessor.for_policy((64, 64), bilinear, 1_000_000)) != key
