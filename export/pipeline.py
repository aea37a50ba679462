"""The export pipeline: build → [fine-tune] → ONNX → parity → [variant] → [evaluate] → publish.

Each step is one function over an :class:`Export` in progress; :func:`plan` lists the
steps an export will run (the progress total is its length). Work happens in a hidden
sibling folder of ``--out``; only a model that passed every check is renamed into place,
so the service never sees a half-written version.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from artifact.card import ModelCard
from artifact.layout import CARD_FILE, MODEL_FILE, retired_folder, work_folder
from artifact.repository import sha256_of
from export.build.card import build_card, default_labels, read_labels_file
from export.build.model import check_weights, create_model, current_arch
from export.build.serving import ServingModel, build_serving_model
from export.errors import ExportError
from export.finetune import run as finetune_run
from export.finetune.data import Dataset, discover
from export.finetune.report import FineTuneReport, evaluate, write_report
from export.onnx.parity import check_parity
from export.onnx.writer import embed_card, export_onnx
from export.options import ExportOptions
from export.precision import (
    calibration_images,
    check_bf16_possible,
    make_variant,
    variant_card,
)
from export.progress import Steps


@dataclass
class Export:
    """One export in progress: what each step reads and what it leaves for the next."""

    options: ExportOptions
    work: Path  # the hidden folder the files are written into
    labels: list[str] | None
    head_classes: int | None  # a new head of this size (--labels), else the arch's own
    dataset: Dataset | None
    calibration: Path | None
    steps: Steps
    model: nn.Module | None = None
    card: ModelCard | None = None
    serving: ServingModel | None = None
    report: FineTuneReport | None = None
    parity: dict[str, Any] = field(default_factory=dict)

    @property
    def onnx_path(self) -> Path:
        return self.work / MODEL_FILE

    def built(self) -> tuple[nn.Module, ModelCard]:
        assert self.model is not None and self.card is not None, "the build step runs first"
        return self.model, self.card


# A step: (progress title, function(export, info) → None, progress lines it prints itself).
Step = tuple[str, Callable[["Export", dict[str, str]], None], int]


def export_model(options: ExportOptions, steps: Steps | None = None) -> ModelCard:
    """Run the whole export (fine-tuning first when ``options.train``); returns the card."""
    options = replace(options, arch=current_arch(options.arch))
    out = options.out
    _check_destination(out, options.force)
    dataset, labels = _dataset_and_labels(options)
    head_classes = len(labels) if labels and dataset is None else None
    check_weights(options.arch, options.weights, head_classes)
    if options.precision == "bf16":
        check_bf16_possible()  # this CPU and OpenVINO, before minutes of work
    planned = plan(options)
    # Each step prints one progress line pair, or ``lines`` of its own; publishing adds one.
    steps = steps or Steps(total=sum(lines or 1 for _, _, lines in planned) + 1)
    job = Export(
        options=options,
        work=work_folder(out, os.getpid()),
        labels=labels,
        head_classes=head_classes,
        dataset=dataset,
        calibration=_calibration_folder(options),
        steps=steps,
    )
    if options.train is not None:
        torch.manual_seed(options.train.seed)  # --weights none: same init, same cached features
    shutil.rmtree(job.work, ignore_errors=True)
    job.work.mkdir(parents=True)
    try:
        for title, run, lines in planned:
            if lines:  # the step prints its own progress lines
                run(job, {})
                continue
            with steps.step(title) as info:
                run(job, info)
        _write_card_file(job)
        _publish(job.work, out, steps)
    finally:
        shutil.rmtree(job.work, ignore_errors=True)
    steps.finish(f"exported {out / MODEL_FILE}")
    return job.built()[1]


def plan(options: ExportOptions) -> list[Step]:
    """The steps ``options`` ask for, in order (publishing comes last, always)."""
    planned: list[Step] = [(f"building {options.arch} (weights: {options.weights})", _build, 0)]
    if options.train is not None:
        planned.append(("", _fine_tune, finetune_run.STEPS))
    planned += [
        ("exporting the serving graph to ONNX", _export_onnx, 0),
        ("verifying ONNX Runtime against torch", _check_parity, 0),
    ]
    if options.precision != "fp32":
        planned.append(
            (f"making the {options.precision} variant, checking it against fp32", _variant, 0)
        )
    if options.train is not None:
        planned.append(("evaluating the ONNX model on the test split", _evaluate, 0))
    planned.append(("embedding the model card, running onnx.checker (full)", _embed, 0))
    return planned


def _build(job: Export, info: dict[str, str]) -> None:
    options = job.options
    model = create_model(options.arch, options.weights, job.head_classes)
    labels = job.labels or default_labels(model)
    info["detail"] = f"{sum(p.numel() for p in model.parameters()):,} parameters"
    job.model = model
    job.card = build_card(
        model,
        name=options.out.parent.name or options.arch,
        version=options.out.name,
        arch=options.arch,
        weights=_weights_description(options.weights),
        labels=labels,
        num_features=_num_features(model),
        opset=options.opset,
    )


def _fine_tune(job: Export, _: dict[str, str]) -> None:
    model, card = job.built()
    assert job.dataset is not None and job.options.train is not None
    job.report = finetune_run.fine_tune(model, job.dataset, card, job.options.train, job.steps)
    job.card = card.model_copy(
        update={
            "weights": f"fine-tuned from {card.weights} on {job.dataset.root}, "
            f"{job.report.dataset.images} images, {len(card.labels)} classes"
        }
    )


def _export_onnx(job: Export, info: dict[str, str]) -> None:
    model, card = job.built()
    job.serving = build_serving_model(model, card.mean, card.std)
    export_onnx(job.serving, job.onnx_path, card.input_size, job.options.opset)
    info["detail"] = f"{job.onnx_path.stat().st_size / 1e6:.1f} MB, opset {job.options.opset}"


def _check_parity(job: Export, info: dict[str, str]) -> None:
    assert job.serving is not None, "the ONNX step runs first"
    figures = check_parity(job.serving, job.onnx_path, job.built()[1])
    job.parity = figures
    info["detail"] = (
        f"max |Δ probabilities| {figures['max_abs_diff_probabilities']:.2e} "
        f"(bound {figures['bound_probabilities']:.0e}), "
        f"max |Δ features|/max |features| {figures['max_rel_diff_features']:.2e} "
        f"(bound {figures['bound_features']:.0e})"
    )


def _variant(job: Export, info: dict[str, str]) -> None:
    _, card = job.built()
    options = job.options
    assert job.calibration is not None and options.precision != "fp32"
    images = calibration_images(job.calibration, card, options.calibration_images)
    check = make_variant(
        options.precision, job.onnx_path, card, images,
        options.min_top1_agreement, options.min_cosine,
    )  # fmt: skip
    job.card = variant_card(card, options.precision).model_copy(update={"precision_check": check})
    info["detail"] = (
        f"top-1 agreement {check['top1_agreement']:.3f}, feature cosine mean "
        f"{check['cosine_mean']:.4f} (min {check['cosine_min']:.4f}) on "
        f"{check['images']} images, {job.onnx_path.stat().st_size / 1e6:.1f} MB"
    )


def _evaluate(job: Export, info: dict[str, str]) -> None:
    """Test-split metrics from the exported file (the model users will serve) into the card."""
    _, card = job.built()
    assert job.report is not None, "fine-tuning runs first"
    evaluate(job.onnx_path, card, job.report)
    metrics = job.report.card_metrics()
    job.card = card.model_copy(update={"metrics": metrics})
    write_report(job.work, job.report)
    info["detail"] = f"test accuracy {metrics['test_accuracy']:.4f}"


def _embed(job: Export, _: dict[str, str]) -> None:
    embed_card(job.onnx_path, job.built()[1])


def _write_card_file(job: Export) -> None:
    """model.json: the embedded card plus the two fields that describe the written file."""
    card = job.built()[1].model_copy(
        update={"onnx_sha256": sha256_of(job.onnx_path), "verification": job.parity}
    )
    job.card = card
    (job.work / CARD_FILE).write_text(
        json.dumps(card.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


def _publish(work: Path, out: Path, steps: Steps) -> None:
    """Rename the finished folder into place; with --force, swap out the old version."""
    with steps.step(f"publishing to {out}"):
        old = retired_folder(out, os.getpid())
        if out.exists():
            out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)


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
