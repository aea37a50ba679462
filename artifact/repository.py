"""A model repository on disk: ``<root>/<name>/<version>/``, which versions are published,
and whether one is intact before anything loads it.

The exporter publishes a version by renaming a finished hidden work folder into place
(:mod:`artifact.layout`), so a scan never sees half a model: a folder counts once both files
are there. A version that is there can still be wrong — copied by hand under another number,
or its ``model.onnx`` swapped — and :func:`verify_version` says so in one line before a
server spends a load and a warm-up on it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from artifact.card import ModelCard
from artifact.errors import ModelLoadError
from artifact.layout import CARD_FILE, MODEL_FILE, MODEL_NAME, is_published

# (size, mtime_ns) of model.onnx and model.json: a version whose files change is re-read.
Signature = tuple[int, int, int, int]


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scan_repository(root: Path) -> dict[str, dict[str, Path]]:
    """``{name: {version: folder}}`` for every published version under ``root``.

    Skipped: files, names that are not model names, hidden folders (an export in progress
    writes ``.<version>.partial-<pid>``), version folders missing either file.
    """
    found: dict[str, dict[str, Path]] = {}
    if not root.is_dir():
        return found
    for model in sorted(root.iterdir()):
        if not model.is_dir() or not MODEL_NAME.fullmatch(model.name):
            continue
        versions = {
            folder.name: folder
            for folder in model.iterdir()
            if folder.name.isdigit() and folder.is_dir() and is_published(folder)
        }
        if versions:
            found[model.name] = dict(sorted(versions.items(), key=lambda kv: int(kv[0])))
    return found


def signature_of(folder: Path) -> Signature:
    """What changes when either file of a version is replaced (cheap: two ``stat`` calls)."""
    onnx_stat, card_stat = (folder / MODEL_FILE).stat(), (folder / CARD_FILE).stat()
    return onnx_stat.st_size, onnx_stat.st_mtime_ns, card_stat.st_size, card_stat.st_mtime_ns


def read_card_file(folder: Path) -> ModelCard:
    """The ``model.json`` of a version folder (ModelLoadError naming the file when unreadable)."""
    path = folder / CARD_FILE
    try:
        return ModelCard.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:  # unreadable, bad JSON, or a card that fails validation
        problem = str(exc).strip().splitlines()[0]
        raise ModelLoadError(f"{path}: not a valid model card: {problem}") from exc


def verify_version(folder: Path) -> ModelCard:
    """The card of ``<name>/<version>`` folder, once its files agree with each other and with
    the folder's place; else ModelLoadError saying what disagrees.

    Checked: ``model.json`` is a valid card for this name and version, and ``model.onnx`` has
    the SHA-256 the card records (a truncated copy or a swapped file is refused). The card
    embedded in ``model.onnx`` is checked by whoever loads it (:func:`check_identity`).
    """
    card = read_card_file(folder)
    check_identity(card, folder, CARD_FILE)
    if card.onnx_sha256 is None:
        raise ModelLoadError(
            f"{folder / CARD_FILE} has no onnx_sha256: publish versions with xception-export"
        )
    actual = sha256_of(folder / MODEL_FILE)
    if actual != card.onnx_sha256:
        raise ModelLoadError(
            f"{folder / MODEL_FILE}: SHA-256 {actual[:12]}… does not match onnx_sha256 "
            f"{card.onnx_sha256[:12]}… in {CARD_FILE} (a partial copy or a replaced file?)"
        )
    return card


def check_identity(card: ModelCard, folder: Path, where: str) -> None:
    """ModelLoadError unless ``card`` names the model and version ``folder`` is published as."""
    name, version = folder.parent.name, folder.name
    if (card.name, card.version) != (name, version):
        raise ModelLoadError(
            f"{folder}: {where} says model {card.name!r} version {card.version!r}, but the "
            f"folder is {name}/{version}: publish it there with xception-export --out "
            f"{name}/{version} (a copied folder keeps its old card)"
        )
