"""``xception-export``: a thin argparse front end over :func:`export.pipeline.export_model`."""

from __future__ import annotations

import argparse
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
            "  xception-export --weights ./xception.pth --out models/xception/2  # offline"
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
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"a <name>/<version> folder to write model.onnx + model.json into ({DEFAULT_OUT})",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    parser.add_argument(
        "--labels", type=Path, metavar="FILE", help="class names, one per line (non-ImageNet heads)"
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17; default 18)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns 0 on success; prints one line and returns 1 on a user error."""
    args = build_parser().parse_args(argv)
    # Imported here so `--help` and argument errors answer instantly, without loading torch.
    from export.pipeline import ExportOptions, export_model

    options = ExportOptions(
        out=args.out,
        arch=args.arch,
        weights=args.weights,
        labels_file=args.labels,
        force=args.force,
        opset=args.opset,
    )
    try:
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
