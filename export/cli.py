"""``xception-export``: a thin argparse front end over :func:`export.pipeline.export_model`.

The flags are built from the fields of :class:`~export.options.ExportOptions` and
:class:`~export.options.TrainOptions` (their metadata), so each default is written once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from artifact.errors import ModelLoadError, was_interrupted
from artifact.layout import DEFAULT_MODEL_FOLDER, is_published
from export.errors import ExportError
from export.options import ExportOptions, TrainOptions

EXAMPLES = (
    "examples:\n"
    f"  xception-export --weights imagenet                 # {DEFAULT_MODEL_FOLDER}\n"
    "  xception-export --weights none --out /tmp/m/x/1     # random weights (tests)\n"
    "  xception-export --weights ./xception.pth --out models/xception/2  # offline\n"
    "  xception-export --data ./cats_vs_dogs --out models/catsdogs/1      # fine-tune"
)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's flags: one per options field that carries ``cli`` metadata."""
    parser = argparse.ArgumentParser(
        prog="xception-export",
        description=(
            "Build a timm classifier (default: Xception), export it as a self-describing ONNX "
            "serving model (uint8 NHWC in; probabilities + bottleneck features out), and verify "
            "it against torch."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    existing = parser.add_mutually_exclusive_group()
    groups: dict[str, Any] = {
        "existing": existing,
        "precision": parser.add_argument_group(
            "precision",
            "fp16 (for the CUDA execution provider) and int8 (static quantization, for the CPU) "
            "are made from the verified fp32 export and checked against it on real images.",
        ),
    }
    _add_fields(parser, ExportOptions, groups)
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="do nothing (exit 0) when --out already holds an exported model: makes a "
        "deployment's export step idempotent",
    )
    tune = parser.add_argument_group(
        "fine-tuning (with --data)",
        "Stage 1 trains a head on cached bottleneck features (backbone frozen); stage 2 "
        "fine-tunes the whole network on augmented images; both keep the best-validation "
        "epoch. The test split is evaluated with the exported ONNX model.",
    )
    _add_fields(tune, TrainOptions, {})
    return parser


def _add_fields(target: Any, options: type, groups: dict[str, Any]) -> None:
    for field in dataclasses.fields(options):
        spec = dict(field.metadata.get("cli", {}))
        if not spec:
            continue
        flag, group = spec.pop("flag"), spec.pop("group", None)
        default = None if field.default is dataclasses.MISSING else field.default
        if default is not None and "type" not in spec and "action" not in spec:
            spec.setdefault("type", type(default))  # float flags parse as floats
        if spec.get("type") in (int, float):
            spec.setdefault("metavar", "N" if spec["type"] is int else "X")
        if default is not None and default is not False and "default:" not in spec["help"]:
            spec["help"] += f" (default: {default})"
        (groups[group] if group else target).add_argument(
            flag, dest=field.name, default=default, **spec
        )


def _options(args: argparse.Namespace) -> ExportOptions:
    def values(options: type) -> dict[str, Any]:
        return {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(options)
            if "cli" in f.metadata
        }

    train = TrainOptions(**values(TrainOptions)) if args.data is not None else None
    return ExportOptions(**values(ExportOptions), train=train)


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns 0 on success; prints one line and returns 1 on a user error."""
    args = build_parser().parse_args(argv)
    if args.skip_existing and is_published(args.out):
        print(f"xception-export: {args.out} already holds a model; nothing to do (--skip-existing)")
        return 0
    try:
        # Imported here so `--help` and argument errors answer instantly, without loading torch.
        from export.pipeline import export_model

        export_model(_options(args))
    except (ExportError, ModelLoadError) as exc:  # ModelLoadError: an engine refused the file
        print(f"xception-export: error: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # a Ctrl-C may surface as another exception: see was_interrupted
        if not was_interrupted(exc):
            raise
        print("xception-export: interrupted; nothing was published", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
