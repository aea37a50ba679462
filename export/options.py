"""What an export is asked to do: the options dataclasses, each field with its CLI flag.

One default per option, written here: ``xception-export``'s parser is built from these
fields (:func:`export.cli.build_parser`), and the library uses the same dataclasses, so
the CLI and ``export_model`` can never disagree. No torch here: ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from artifact.card import Precision
from artifact.layout import DEFAULT_MODEL_FOLDER, LayoutError, check_version_folder

DEFAULT_OUT = DEFAULT_MODEL_FOLDER
DEFAULT_OPSET = 18  # the opset the serving graph is exported at (>= 17: the contract)


def cli(flag: str, help: str, **argparse_kwargs: Any) -> dict[str, Any]:
    """Field metadata: the flag, its help, and any other ``add_argument`` keywords."""
    return {"cli": {"flag": flag, "help": help, **argparse_kwargs}}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def version_folder(text: str) -> Path:
    """``--out``: a ``<name>/<version>`` folder (see :mod:`artifact.layout`)."""
    try:
        return check_version_folder(Path(text))
    except LayoutError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_split(text: str) -> tuple[float, float, float]:
    """``"70/15/15"`` or ``"0.7,0.15,0.15"`` → fractions summing to 1."""
    try:
        parts = [float(p) for p in text.replace(",", "/").split("/")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0 or parts[0] <= 0 or sum(parts) <= 0:
        raise argparse.ArgumentTypeError(f"--split {text!r}: expected train/val/test like 70/15/15")
    total = sum(parts)
    return parts[0] / total, parts[1] / total, parts[2] / total


@dataclass(frozen=True)
class TrainOptions:
    """Fine-tuning (``--data`` and the flags of its group)."""

    data: Path = field(
        metadata=cli(
            "--data",
            "image folder: DIR/<class>/* or DIR/train|val|test/<class>/*",
            metavar="DIR",
            type=Path,
        )
    )
    head: Literal["mlp", "linear"] = field(
        default="mlp",
        metadata=cli("--head", "mlp: 256→128 ReLU+dropout 0.5; linear", choices=("mlp", "linear")),
    )
    epochs_head: int = field(
        default=30, metadata=cli("--epochs-head", "stage-1 epochs", type=positive_int, metavar="N")
    )
    epochs_finetune: int = field(
        default=2,
        metadata=cli(
            "--epochs-finetune", "stage-2 epochs, 0 to skip", type=non_negative_int, metavar="N"
        ),
    )
    lr_head: float = field(default=0.01, metadata=cli("--lr-head", "stage-1 SGD learning rate"))
    lr_finetune: float = field(
        default=0.005, metadata=cli("--lr-finetune", "stage-2 SGD learning rate (Nesterov)")
    )
    momentum_finetune: float = field(
        default=0.1, metadata=cli("--momentum-finetune", "stage-2 momentum")
    )
    batch_size: int = field(
        default=16, metadata=cli("--batch-size", "images per step", type=positive_int, metavar="N")
    )
    seed: int = field(default=0, metadata=cli("--seed", "split, init and shuffling seed"))
    split: tuple[float, float, float] = field(
        default=(0.7, 0.15, 0.15),
        metadata=cli(
            "--split",
            "train/val/test when DIR is not split, e.g. 70/15/15 (default: 70/15/15)",
            type=parse_split,
        ),
    )
    cache_dir: Path | None = field(
        default=None,
        metadata=cli(
            "--cache-dir",
            "bottleneck-feature cache (default: ~/.cache/xception-export/features)",
            metavar="DIR",
            type=Path,
        ),
    )


@dataclass(frozen=True)
class ExportOptions:
    """What ``xception-export`` was asked to do (one field per CLI flag)."""

    out: Path = field(
        default=DEFAULT_OUT,
        metadata=cli(
            "--out",
            "a <name>/<version> folder to write model.onnx + model.json into",
            type=version_folder,
            metavar="DIR",
        ),
    )
    arch: str = field(default="legacy_xception", metadata=cli("--arch", "timm model name"))
    weights: str = field(
        default="imagenet",
        metadata=cli(
            "--weights",
            "imagenet (download via timm), none (random init), or a local .pth/.pt/.safetensors "
            "state dict (the air-gapped route)",
            metavar="imagenet|none|PATH",
        ),
    )
    labels_file: Path | None = field(
        default=None,
        metadata=cli(
            "--labels", "class names, one per line (non-ImageNet heads)", metavar="FILE", type=Path
        ),
    )
    force: bool = field(
        default=False,
        metadata=cli(
            "--force", "replace an existing version", action="store_true", group="existing"
        ),
    )
    opset: int = field(
        default=DEFAULT_OPSET, metadata=cli("--opset", "ONNX opset (>= 17)", type=int)
    )
    train: TrainOptions | None = None  # set by --data: fine-tune before exporting
    precision: Precision = field(
        default="fp32",
        metadata=cli(
            "--precision",
            "model precision (bf16: the fp32 file run by OpenVINO in bf16, on CPUs with "
            "AVX512_BF16 or AMX)",
            choices=("fp32", "fp16", "int8", "bf16"),
            group="precision",
        ),
    )
    calibration: Path | None = field(
        default=None,
        metadata=cli(
            "--calibration",
            "real images to calibrate int8 and to verify fp16/int8/bf16 against fp32 "
            "(default: the --data folder)",
            metavar="DIR",
            type=Path,
            group="precision",
        ),
    )
    calibration_images: int = field(
        default=128,
        metadata=cli(
            "--calibration-images",
            "at most N of them",
            type=positive_int,
            metavar="N",
            group="precision",
        ),
    )
    min_top1_agreement: float = field(
        default=0.99,
        metadata=cli(
            "--min-agreement", "fail below this top-1 agreement with fp32", group="precision"
        ),
    )
    min_cosine: float = field(
        default=0.99,
        metadata=cli(
            "--min-cosine",
            "fail below this mean feature cosine similarity with fp32",
            group="precision",
        ),
    )
