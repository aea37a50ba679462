"""Labels and the model card for an export: everything the service needs, derived from timm."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import onnx
import timm
import torch
from timm.data import (
    DEFAULT_CROP_PCT,
    ImageNetInfo,
    infer_imagenet_subset,
    resolve_data_config,
)
from torch import nn

from artifact.card import ModelCard, Precision, ResizePolicy
from export.errors import ExportError


def read_labels_file(path: Path) -> list[str]:
    """One label per line; blank lines ignored; duplicates are an error."""
    if not path.is_file():
        raise ExportError(f"--labels {str(path)!r}: no such file")
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    labels = [label for label in labels if label]
    if not labels:
        raise ExportError(f"--labels {str(path)!r}: the file has no labels (one per line)")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ExportError(f"--labels {str(path)!r}: duplicate labels {duplicates[:3]}")
    return labels


def default_labels(model: nn.Module) -> list[str]:
    """Human-readable ImageNet names (e.g. 281 = "tabby, tabby cat") for ImageNet heads."""
    num_classes = int(getattr(model, "num_classes", 0))
    subset = infer_imagenet_subset(model)
    if subset is None:
        raise ExportError(
            f"the model has {num_classes} classes and no known label set; "
            "pass --labels FILE (one label per line)"
        )
    labels = list(ImageNetInfo(subset).label_descriptions())
    if len(labels) != num_classes:
        raise ExportError(f"{subset} has {len(labels)} labels but the model has {num_classes}")
    return labels


# timm's crop modes (``transforms_imagenet_eval``) → the card's: "center" is our "crop".
CROP_MODES = {None: "crop", "center": "crop", "squash": "squash", "border": "border"}


def resize_policy(data_cfg: dict[str, Any]) -> ResizePolicy:
    """timm's eval transform for the weights, as the card's resize policy.

    A crop mode we do not know is refused rather than served as a centre crop (the model
    would get other pixels than it was trained on); a missing ``crop_pct`` is timm's own
    default (``DEFAULT_CROP_PCT``, 0.875), as timm's transform would use."""
    crop_mode = data_cfg.get("crop_mode")
    if crop_mode not in CROP_MODES:
        known = ", ".join(repr(mode) for mode in CROP_MODES if mode)
        raise ExportError(
            f"timm's data config has crop_mode {crop_mode!r}; the model card knows {known}"
        )
    crop_pct = data_cfg.get("crop_pct")
    return ResizePolicy(
        mode=CROP_MODES[crop_mode],
        crop_pct=float(DEFAULT_CROP_PCT if crop_pct is None else crop_pct),
        interpolation=str(data_cfg.get("interpolation") or "bicubic"),
    )


def build_card(
    model: nn.Module,
    *,
    name: str,
    version: str,
    arch: str,
    weights: str,
    labels: list[str],
    num_features: int,
    opset: int,
    precision: Precision = "fp32",
) -> ModelCard:
    """The card for ``model`` as exported (``onnx_sha256``/``verification`` are added later)."""
    data_cfg = resolve_data_config(model=model)
    _, height, width = data_cfg["input_size"]
    return ModelCard(
        name=name,
        version=version,
        arch=arch,
        weights=weights,
        input_size=(int(height), int(width)),
        resize=resize_policy(data_cfg),
        mean=_rgb(data_cfg["mean"]),
        std=_rgb(data_cfg["std"]),
        num_classes=len(labels),
        num_features=num_features,
        labels=labels,
        precision=precision,
        num_params=sum(p.numel() for p in model.parameters()),
        opset=opset,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        versions={"torch": torch.__version__, "timm": timm.__version__, "onnx": onnx.__version__},
    )


def _rgb(values: Any) -> tuple[float, float, float]:
    red, green, blue = (float(v) for v in values)
    return red, green, blue
