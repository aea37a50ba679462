"""The export pipeline: build → [fine-tune] → ONNX → parity → [evaluate] → card → publish.

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

import numpy as np
import torch
from torch import nn

from export.build import check_weights, create_model
from export.card import build_card, default_labels, read_labels_file
from export.data import Dataset, discover
from export.errors import ExportError
from export.finetune import TrainOptions, fine_tune
from export.onnx_io import embed_card, export_onnx, sha256_of
from export.precision import calibration_images, make_variant
from export.progress import Steps
from export.report import classification_metrics, onnx_predictions, write_report
from export.serving import build_serving_model
from export.verify import check_parity
from service.model_card import ModelCard, Precision
from service.preprocess import LOCAL_MAX_ASPECT_RATIO, LOCAL_MAX_PIXELS, Preprocessor

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
    train: TrainOptions | None = None  # set by --data: fine-tune before exporting
    precision: Precision = "fp32"
    calibration: Path | None = None  # real images for int8 calibration / variant checks
    calibration_images: int = 128
    min_top1_agreement: float = 0.99
    min_cosine: float = 0.99


def export_model(options: ExportOptions, steps: Steps | None = None) -> ModelCard:
    """Run the whole export (fine-tuning first with ``train``); returns the written card."""
    out = options.out
    _check_destination(out, options.force)
    dataset, labels = _dataset_and_labels(options)
    head_classes = len(labels) if labels and dataset is None else None
    check_weights(options.arch, options.weights, head_classes)
    calibration = _calibration_folder(options)
    steps = steps or Steps(total=(8 if dataset else 5) + (options.precision != "fp32"))
    if options.train is not None:
        torch.manual_seed(options.train.seed)  # --weights none: same init, same cached features

    with steps.step(f"building {options.arch} (weights: {options.weights})") as info:
        model = create_model(options.arch, options.weights, head_classes)
        labels = labels or default_labels(model)
        info["detail"] = f"{sum(p.numel() for p in model.parameters()):,} parameters"
    card = build_card(
        model,
        name=out.parent.name or options.arch,
        version=out.name,
        arch=options.arch,
        weights=_weights_description(options.weights),
        labels=labels,
        num_features=_num_features(model),
        opset=options.opset,
    )
    report = None
    if dataset is not None and options.train is not None:
        report = fine_tune(model, dataset, card, options.train, steps)
        used = report["dataset"]["images"]
        card = card.model_copy(
            update={
                "weights": f"fine-tuned from {card.weights} on {dataset.root}, {used} images, "
                f"{len(labels)} classes"
            }
        )

    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        card = _write_model(model, card, work, steps, report, options, calibration)
        _publish(work, out, steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps.finish(f"exported {out / MODEL_FILE}")
    return card


def _dataset_and_labels(options: ExportOptions) -> tuple[Dataset | None, list[str] | None]:
    if options.train is None:
        return None, read_labels_file(options.labels_file) if options.labels_file else None
    if options.labels_file:
        raise ExportError(
            "--labels and --data exclude each other: with --data, the class "
            "folder names are the labels"
        )
    dataset = discover(options.train.data, options.train.split, options.train.seed)
    return dataset, dataset.classes


def _calibration_folder(options: ExportOptions) -> Path | None:
    if options.precision == "fp32":
        return None
    folder = options.calibration or (options.train.data if options.train else None)
    if folder is None:
        raise ExportError(
            f"--precision {options.precision} needs real images to calibrate and verify "
            "against fp32: pass --calibration DIR (or --data DIR)"
        )
    if not folder.is_dir():
        raise ExportError(f"--calibration {str(folder)!r}: no such folder")
    return folder


def _write_model(
    model: nn.Module,
    card: ModelCard,
    work: Path,
    steps: Steps,
    report: dict[str, Any] | None,
    options: ExportOptions,
    calibration: Path | None,
) -> ModelCard:
    onnx_path = work / MODEL_FILE
    with steps.step("exporting the serving graph to ONNX") as info:
        serving = build_serving_model(model, card.mean, card.std)
        export_onnx(serving, onnx_path, card.input_size, card.opset or 18)
        info["detail"] = f"{onnx_path.stat().st_size / 1e6:.1f} MB, opset {card.opset}"

    with steps.step("verifying ONNX Runtime against torch") as info:
        figures = check_parity(serving, onnx_path, card)
        info["detail"] = (
            f"max |Δ probabilities| {figures['max_abs_diff_probabilities']:.2e} "
            f"(bound {figures['bound_probabilities']:.0e}), "
            f"max |Δ features|/max |features| {figures['max_rel_diff_features']:.2e} "
            f"(bound {figures['bound_features']:.0e})"
        )

    if calibration is not None and options.precision != "fp32":
        with steps.step(
            f"making the {options.precision} variant, checking it against fp32"
        ) as info:
            images = calibration_images(calibration, card, options.calibration_images)
            check = make_variant(
                options.precision, onnx_path, images,
                options.min_top1_agreement, options.min_cosine,
            )  # fmt: skip
            card = card.model_copy(
                update={"precision": options.precision, "precision_check": check}
            )
            info["detail"] = (
                f"top-1 agreement {check['top1_agreement']:.3f}, feature cosine mean "
                f"{check['cosine_mean']:.4f} (min {check['cosine_min']:.4f}) on "
                f"{check['images']} images, {onnx_path.stat().st_size / 1e6:.1f} MB"
            )

    if report is not None:
        with steps.step("evaluating the ONNX model on the test split") as info:
            card = card.model_copy(update={"metrics": _evaluate(onnx_path, card, report)})
            write_report(work, report)
            info["detail"] = f"test accuracy {report['test']['accuracy']:.4f}"

    with steps.step("embedding the model card, running onnx.checker (full)"):
        embed_card(onnx_path, card)

    card = card.model_copy(update={"onnx_sha256": sha256_of(onnx_path), "verification": figures})
    (work / CARD_FILE).write_text(
        json.dumps(card.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return card


def _evaluate(onnx_path: Path, card: ModelCard, report: dict[str, Any]) -> dict[str, Any]:
    """Test-split metrics from ONNX Runtime; fills ``report['test']``, returns card metrics."""
    root = Path(report["dataset"]["root"])
    test = [(root / rel, label) for rel, label in report["test_samples"]]
    preprocess = Preprocessor.for_card(card, LOCAL_MAX_PIXELS, LOCAL_MAX_ASPECT_RATIO)
    probabilities = onnx_predictions(onnx_path, [p for p, _ in test], preprocess)
    labels = np.array([label for _, label in test])
    report["test"] = classification_metrics(labels, probabilities.argmax(axis=1), card.labels)
    report["model"] = f"{card.name}/{card.version} ({card.arch})"
    best_val = max(report["stage1"]["best_val_accuracy"], report["stage2"]["best_val_accuracy"])
    return {
        "test_accuracy": report["test"]["accuracy"],
        "test_images": report["test"]["images"],
        "val_accuracy": best_val,
        "per_class": report["test"]["per_class"],
        "confusion": report["test"]["confusion"],
    }


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
