"""Evaluation figures and the human-readable report of a fine-tuning run.

Test metrics come from the exported ONNX file run by ONNX Runtime — the model users
will serve — not from the torch model it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artifact.batches import run_folder
from artifact.card import ModelCard
from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime
from export.errors import ExportError
from export.finetune.train import StageResult

EVAL_BATCH = 16


@dataclass(frozen=True)
class DatasetSummary:
    """The data a fine-tuning run used, and what it skipped."""

    root: Path
    classes: list[str]
    images: int
    counts: dict[str, dict[str, int]]  # split → class → images
    unreadable: list[str]  # relative paths
    ignored_files: int


@dataclass(frozen=True)
class ClassificationMetrics:
    """Test-split figures of the exported model."""

    accuracy: float
    images: int
    per_class: dict[str, dict[str, float]]  # precision, recall, f1, support
    confusion: list[list[int]]  # [true][predicted]


@dataclass
class FineTuneReport:
    """Everything a fine-tuning run reports: filled by training, then by the evaluation."""

    dataset: DatasetSummary
    device: str
    options: dict[str, Any]
    features_computed: int
    features_cache: Path
    stage1: StageResult
    stage2: StageResult
    test_samples: list[tuple[Path, int]]  # evaluated later, on the exported ONNX file
    model: str = ""
    test: ClassificationMetrics | None = None

    @property
    def best_val_accuracy(self) -> float:
        return max(self.stage1.best_val_accuracy, self.stage2.best_val_accuracy)

    def card_metrics(self) -> dict[str, Any]:
        """The figures a fine-tuned model's card carries."""
        if self.test is None:
            raise ValueError("the test split has not been evaluated yet")
        return {
            "test_accuracy": self.test.accuracy,
            "test_images": self.test.images,
            "val_accuracy": self.best_val_accuracy,
            "per_class": self.test.per_class,
            "confusion": self.test.confusion,
        }

    def as_json(self) -> dict[str, Any]:
        """report.json's content."""
        data = self.dataset
        return {
            "model": self.model,
            "dataset": {
                "root": str(data.root),
                "classes": data.classes,
                "images": data.images,
                "counts": data.counts,
                "unreadable": data.unreadable,
                "ignored_files": data.ignored_files,
            },
            "features": {"computed": self.features_computed, "cache": str(self.features_cache)},
            "device": self.device,
            "options": self.options,
            "stage1": self.stage1.as_dict(),
            "stage2": self.stage2.as_dict(),
            "test_samples": [
                (str(path.relative_to(data.root)), label) for path, label in self.test_samples
            ],
            "test": None if self.test is None else vars(self.test),
        }


def evaluate(onnx_path: Path, card: ModelCard, report: FineTuneReport) -> None:
    """Test-split metrics from ONNX Runtime on the CPU, into ``report.test``."""
    paths = [path for path, _ in report.test_samples]
    runtime = ModelRuntime(onnx_path, "cpu", card=card, engine="onnxruntime")
    probabilities, _, _, skipped = run_folder(
        runtime, paths, Preprocessor.for_local_files(card), EVAL_BATCH
    )
    if skipped:  # they were readable when the features were computed
        raise ExportError(f"test images became unreadable during the export: {skipped[:3]}")
    labels = np.array([label for _, label in report.test_samples])
    report.test = classification_metrics(labels, probabilities.argmax(axis=1), card.labels)
    report.model = f"{card.name}/{card.version} ({card.arch})"


def classification_metrics(
    labels: np.ndarray, predicted: np.ndarray, classes: list[str]
) -> ClassificationMetrics:
    """Accuracy, per-class precision/recall/F1/support, confusion matrix [true][predicted]."""
    size = len(classes)
    confusion = np.zeros((size, size), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for i, name in enumerate(classes):
        true_pos = int(confusion[i, i])
        predicted_i, actual_i = int(confusion[:, i].sum()), int(confusion[i].sum())
        precision = true_pos / predicted_i if predicted_i else 0.0
        recall = true_pos / actual_i if actual_i else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": precision, "recall": recall, "f1": f1, "support": actual_i,
        }  # fmt: skip
    return ClassificationMetrics(
        accuracy=float(np.trace(confusion) / max(1, confusion.sum())),
        images=int(confusion.sum()),
        per_class=per_class,
        confusion=confusion.tolist(),
    )


def write_report(folder: Path, typed: FineTuneReport) -> None:
    """report.json, report.md, curves.png and confusion.png into ``folder``."""
    report = typed.as_json()
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(markdown(report), encoding="utf-8")
    _plot_curves(folder / "curves.png", report)
    _plot_confusion(folder / "confusion.png", report["test"], report["dataset"]["classes"])


def markdown(report: dict[str, Any]) -> str:
    """The report as tables a person reads."""
    data, test = report["dataset"], report["test"]
    classes = data["classes"]
    lines = [
        f"# Fine-tuning report: {report['model']}",
        "",
        f"Data: `{data['root']}`, {len(classes)} classes, {data['images']} images used; "
        f"{len(data['unreadable'])} unreadable skipped, {data['ignored_files']} non-image "
        "files ignored.",
        "",
        "| split | " + " | ".join(classes) + " | total |",
        "|---|" + "---|" * (len(classes) + 1),
    ]
    for split, counts in data["counts"].items():
        row = [str(counts[c]) for c in classes]
        lines.append(f"| {split} | " + " | ".join(row) + f" | {sum(counts.values())} |")
    lines += [
        "",
        "| stage | epochs | best epoch | best val accuracy | seconds |",
        "|---|---|---|---|---|",
    ]
    for stage in ("stage1", "stage2"):
        s = report[stage]
        lines.append(
            f"| {stage} | {s['epochs']} | {s['best_epoch']} | {s['best_val_accuracy']:.4f} "
            f"| {s['seconds']} |"
        )
    if report["stage2"]["epochs"] and report["stage2"]["best_epoch"] == 0:
        lines += ["", "Stage 2 did not beat stage 1 on validation: the stage-1 weights were kept."]
    lines += [
        "",
        f"## Test split (ONNX Runtime on the exported model): accuracy {test['accuracy']:.4f} "
        f"on {test['images']} images",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, m in test["per_class"].items():
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
            f"| {m['support']} |"
        )
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", ""]
    lines += ["| | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for name, row in zip(classes, test["confusion"], strict=True):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "![curves](curves.png) ![confusion](confusion.png)", ""]
    return "\n".join(lines)


def _plot_curves(path: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    offset = 0
    for stage, title in (("stage1", "stage 1 (head)"), ("stage2", "stage 2 (fine-tune)")):
        history = report[stage]["history"]
        if not history:
            continue
        epochs = [offset + row["epoch"] for row in history]
        for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            train = [row[f"train_{key}"] for row in history]
            ax.plot(epochs, train, "o-", ms=3, label=f"{title} train")
            val = [row[f"val_{key}"] for row in history]
            ax.plot(epochs, val, "s--", ms=3, label=f"{title} val")
        if offset:
            for ax in (loss_ax, acc_ax):
                ax.axvline(offset + 0.5, color="grey", lw=0.8)
        offset = epochs[-1]
    loss_ax.set_yscale("log")
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_confusion(path: Path, test: dict[str, Any], classes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(test["confusion"])
    size = max(3.0, 0.6 * len(classes) + 2)
    figure, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {test['accuracy']:.3f}")
    for (row, col), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=color)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
