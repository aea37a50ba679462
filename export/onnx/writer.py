"""Writing the serving graph to ONNX: export, embed the card, run the full checker."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import onnx
import torch

from artifact.card import (
    INPUT_NAME,
    METADATA_CARD_KEY,
    METADATA_LABELS_KEY,
    OUTPUT_NAMES,
    ModelCard,
)
from export.build.serving import ServingModel
from export.errors import ExportError

MIN_OPSET = 17
# The trace batch must not be 1 (torch.export would specialise the axis) and differs
# from the verification batch, so verification exercises the dynamic axis.
TRACE_BATCH = 2


def export_onnx(model: ServingModel, path: Path, input_size: tuple[int, int], opset: int) -> None:
    """Export ``model`` with the torch.export-based exporter and a dynamic batch axis."""
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset}: the artifact contract needs opset >= {MIN_OPSET}")
    height, width = input_size
    example = torch.randint(0, 256, (TRACE_BATCH, height, width, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    chatter = io.StringIO()
    try:
        # The exporter prints its own step lines; keep ours clean, show its text on failure.
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=({0: batch},),
                external_data=False,
            )
    except Exception as exc:
        tail = " | ".join(chatter.getvalue().strip().splitlines()[-3:])
        raise ExportError(
            f"ONNX export failed: {type(exc).__name__}: {exc} {tail}".strip()
        ) from exc


def embed_card(path: Path, card: ModelCard) -> None:
    """Write the card and labels into ``metadata_props``, then run ``onnx.checker`` (full)."""
    proto = onnx.load(str(path))
    kept = [
        p for p in proto.metadata_props if p.key not in (METADATA_CARD_KEY, METADATA_LABELS_KEY)
    ]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.helper.set_model_props(
        proto,
        {
            METADATA_CARD_KEY: json.dumps(card.embedded(), ensure_ascii=False),
            METADATA_LABELS_KEY: json.dumps(card.labels, ensure_ascii=False),
        },
    )
    proto.producer_name = "xception-export"
    proto.doc_string = f"{card.name}/{card.version}: {card.arch} ({card.weights})"
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ExportError(f"onnx.checker rejected the exported model: {first}") from exc
