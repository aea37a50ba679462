"""Where a model version lives on disk: ``<root>/<name>/<version>/model.onnx + model.json``.

The one place the file names and the folder rules are spelled: the exporter writes this
layout, the service and ``xception-features`` read it, and a model repository orders a
model's versions as integers.
"""

from __future__ import annotations

import re
from pathlib import Path

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Where the exporter writes, and the service and the bulk tools read, when not told otherwise.
DEFAULT_MODEL_FOLDER = Path("models/xception/1")


class LayoutError(ValueError):
    """A path that is not a model version folder; the message says what is expected."""


def check_version_folder(path: Path) -> Path:
    """``path`` if it is ``<name>/<version>`` (version: digits), else a :class:`LayoutError`."""
    name, version = path.parent.name, path.name
    if not version.isdigit() or not MODEL_NAME.fullmatch(name):
        raise LayoutError(
            f"{str(path)!r} is not a <name>/<version> folder: the last part must be a version "
            "number and the one before it a model name (letters, digits, . _ -), "
            f"e.g. {DEFAULT_MODEL_FOLDER}"
        )
    return path


def model_file(path: Path) -> Path:
    """The ``.onnx`` file of a version folder, or ``path`` itself when it is a file."""
    return path / MODEL_FILE if path.is_dir() else path


def is_published(folder: Path) -> bool:
    """Whether ``folder`` holds a complete export (both files; publishing is atomic)."""
    return (folder / MODEL_FILE).is_file() and (folder / CARD_FILE).is_file()


def work_folder(out: Path, pid: int) -> Path:
    """The hidden sibling an export writes into before renaming it to ``out``."""
    return out.parent / f".{out.name}.partial-{pid}"


def retired_folder(out: Path, pid: int) -> Path:
    """Where a replaced version is moved (then deleted) while the new one takes its name."""
    return out.parent / f".{out.name}.old-{pid}"
