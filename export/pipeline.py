"""The export pipeline: build → wrap → ONNX → card + checker → parity → publish atomically.

Work happens in a hidden sibling folder of ``--out``; only a model that passed every
check is renamed into place, so the service never sees a half-written version.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from export.build import check_weights, create_model
from export.card import build_card, default_labels, read_labels_file
from export.errors import ExportError
from export.onnx_io import embed_card, export_onnx, sha256_of
from export.progress import Steps
from export.serving import build_serving_model
from export.verify import check_parity
from service.model_card import ModelCard

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"


@dataclass(frozen=True)
class ExportOptions:
    """What ``xception-export`` was asked to do (one field per CLI flag)."""

    out: Path
    arch: str = "legacy_xception"
    weights: str = "none"
    labels_file: Path | None = None
    force: bool = False
    opset: int = 18


def export_model(options: ExportOptions, steps: Steps | None = None) -> ModelCard:
    """Run the whole export; returns the card written to ``model.json``."""
    out = options.out
    _check_destination(out, options.force)
    labels = read_labels_file(options.labels_file) if options.labels_file else None
    check_weights(options.arch, options.weights, len(labels) if labels else None)
    steps = steps or Steps(total=5)

    with steps.step(f"building {options.arch} (weights: {options.weights})") as info:
        model = create_model(options.arch, options.weights, len(labels) if labels else None)
        labels = labels or default_labels(model)
        info["detail"] = f"{sum(p.numel() for p in model.parameters()):,} parameters"

    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        card = _write_model(model, options, labels, work, steps)
        _publish(work, out, steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps.finish(f"exported {out / MODEL_FILE}")
    return card


def _write_model(
    model: nn.Module, options: ExportOptions, labels: list[str], work: Path, steps: Steps
) -> ModelCard:
    onnx_path = work / MODEL_FILE
    card = build_card(
        model,
        name=options.out.parent.name or options.arch,
        version=options.out.name,
        arch=options.arch,
        weights=_weights_description(options.weights),
        labels=labels,
        num_features=_num_features(model),
        opset=options.opset,
    )
    with steps.step("exporting the serving graph to ONNX") as info:
        serving = build_serving_model(model, card.mean, card.std)
        export_onnx(serving, onnx_path, card.input_size, options.opset)
        info["detail"] = f"{onnx_path.stat().st_size / 1e6:.1f} MB, opset {options.opset}"

    with steps.step("embedding the model card, running onnx.checker (full)"):
        embed_card(onnx_path, card)

    with steps.step("verifying ONNX Runtime against torch") as info:
        figures = check_parity(serving, onnx_path, card)
        info["detail"] = (
            f"max |Δ probabilities| {figures['max_abs_diff_probabilities']:.2e} "
            f"(bound {figures['bound_probabilities']:.0e}), "
            f"max |Δ features|/max |features| {figures['max_rel_diff_features']:.2e} "
            f"(bound {figures['bound_features']:.0e})"
        )

    card = card.model_copy(update={"onnx_sha256": sha256_of(onnx_path), "verification": figures})
    (work / CARD_FILE).write_text(
        json.dumps(card.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return card


def _publish(work: Path, out: Path, steps: Steps) -> None:
    """Rename the finished folder into place; with --force, swap out the old version."""
    with steps.step(f"publishing to {out}"):
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)


def _check_destination(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {str(out)!r} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(
            f"--out {str(out)!r} already holds a model version; pass --force to replace it "
            "or choose a new version folder"
        )


def _weights_description(weights: str) -> str:
    return weights if weights in ("imagenet", "none") else str(Path(weights).resolve())


def _num_features(model: nn.Module) -> int:
    # Models with a pre-logits stage (vgg16: 4096) report its width as head_hidden_size.
    value: Any = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", 0)
    return int(value)
