"""``xception-export``: a thin argparse front end over :func:`export.pipeline.export_model`."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from export.errors import ExportError

DEFAULT_OUT = Path("models/xception/1")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's flags; each maps to one field of :class:`export.pipeline.ExportOptions`."""
    parser = argparse.ArgumentParser(
        prog="xception-export",
        description=(
            "Build a timm classifier (default: Xception), export it as a self-describing ONNX "
            "serving model (uint8 NHWC in; probabilities + bottleneck features out), and verify "
            "it against torch."
        ),
        epilog=(
            "examples:\n"
            "  xception-export --weights imagenet                 # models/xception/1\n"
            "  xception-export --weights none --out /tmp/m/x/1     # random weights (tests)\n"
            "  xception-export --weights ./xception.pth --out models/xception/2  # offline\n"
            "  xception-export --data ./cats_vs_dogs --out models/catsdogs/1      # fine-tune"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", default="legacy_xception", help="timm model name")
    parser.add_argument(
        "--weights",
        default="imagenet",
        metavar="imagenet|none|PATH",
        help="imagenet (download via timm), none (random init), or a local "
        ".pth/.pt/.safetensors state dict (the air-gapped route). Default: imagenet",
    )
    parser.add_argument(
        "--out",
        type=_model_folder,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"a <name>/<version> folder to write model.onnx + model.json into ({DEFAULT_OUT})",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--force", action="store_true", help="replace an existing version")
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="do nothing (exit 0) when --out already holds an exported model: makes a "
        "deployment's export step idempotent",
    )
    parser.add_argument(
        "--labels", type=Path, metavar="FILE", help="class names, one per line (non-ImageNet heads)"
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17; default 18)")
    variant = parser.add_argument_group(
        "precision",
        "fp16 (for the CUDA execution provider) and int8 (static quantization, for the CPU) "
        "are made from the verified fp32 export and checked against it on real images.",
    )
    variant.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    variant.add_argument(
        "--calibration",
        type=Path,
        metavar="DIR",
        help="real images to calibrate int8 and to verify fp16/int8 against "
        "fp32 (default: the --data folder)",
    )
    variant.add_argument(
        "--calibration-images",
        type=_positive_int,
        default=128,
        metavar="N",
        help="at most N of them (128)",
    )
    variant.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="fail below this top-1 agreement with fp32 (0.99)",
    )
    variant.add_argument(
        "--min-cosine",
        type=float,
        default=0.99,
        help="fail below this mean feature cosine similarity with fp32 (0.99)",
    )
    tune = parser.add_argument_group(
        "fine-tuning (with --data)",
        "Stage 1 trains a head on cached bottleneck features (backbone frozen); stage 2 "
        "fine-tunes the whole network on augmented images; both keep the best-validation "
        "epoch. The test split is evaluated with the exported ONNX model.",
    )
    tune.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="image folder: DIR/<class>/* or DIR/train|val|test/<class>/*",
    )
    tune.add_argument(
        "--head",
        choices=("mlp", "linear"),
        default="mlp",
        help="mlp: 256→128 ReLU+dropout 0.5 (default); linear",
    )
    tune.add_argument(
        "--epochs-head", type=_positive_int, default=30, metavar="N", help="stage-1 epochs (30)"
    )
    tune.add_argument(
        "--epochs-finetune",
        type=_non_negative_int,
        default=2,
        metavar="N",
        help="stage-2 epochs, 0 to skip (2)",
    )
    tune.add_argument("--lr-head", type=float, default=0.01, help="stage-1 SGD learning rate")
    tune.add_argument(
        "--lr-finetune", type=float, default=0.005, help="stage-2 SGD learning rate (Nesterov)"
    )
    tune.add_argument("--momentum-finetune", type=float, default=0.1, help="stage-2 momentum")
    tune.add_argument("--batch-size", type=_positive_int, default=16, metavar="N")
    tune.add_argument("--seed", type=int, default=0, help="split, init and shuffling seed")
    tune.add_argument("--split", default="70/15/15", help="train/val/test when DIR is not split")
    tune.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="bottleneck-feature cache (default ~/.cache/xception-export/features)",
    )
    return parser


# models/<name>/<version>: the service reads the name and version from these two folder names,
# and a model repository orders versions as integers.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _model_folder(text: str) -> Path:
    path = Path(text)
    name, version = path.parent.name, path.name
    if not version.isdigit() or not MODEL_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a <name>/<version> folder: the last part must be a version number "
            f"and the one before it a model name (letters, digits, . _ -), e.g. models/xception/1"
        )
    return path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns 0 on success; prints one line and returns 1 on a user error."""
    args = build_parser().parse_args(argv)
    if args.skip_existing and all((args.out / f).is_file() for f in ("model.onnx", "model.json")):
        print(f"xception-export: {args.out} already holds a model; nothing to do (--skip-existing)")
        return 0
    # Imported here so `--help` and argument errors answer instantly, without loading torch.
    from export.data import parse_split
    from export.finetune import TrainOptions
    from export.pipeline import ExportOptions, export_model

    try:
        train = None
        if args.data is not None:
            train = TrainOptions(
                data=args.data,
                head=args.head,
                epochs_head=args.epochs_head,
                epochs_finetune=args.epochs_finetune,
                lr_head=args.lr_head,
                lr_finetune=args.lr_finetune,
                momentum_finetune=args.momentum_finetune,
                batch_size=args.batch_size,
                seed=args.seed,
                split=parse_split(args.split),
                cache_dir=args.cache_dir,
            )
        options = ExportOptions(
            out=args.out,
            arch=args.arch,
            weights=args.weights,
            labels_file=args.labels,
            force=args.force,
            opset=args.opset,
            train=train,
            precision=args.precision,
            calibration=args.calibration,
            calibration_images=args.calibration_images,
            min_top1_agreement=args.min_agreement,
            min_cosine=args.min_cosine,
        )
        export_model(options)
    except ExportError as exc:
        print(f"xception-export: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("xception-export: interrupted; nothing was published", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
