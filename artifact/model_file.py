"""What an exported ``.onnx`` file says about itself, read without starting an engine.

The card (``metadata_props["model_card"]``) and the graph's input and output names are all
the loader needs before it decides which engine runs the file, so they are read here once,
with protobuf (a dependency of ONNX Runtime already; the ``onnx`` package is the export
stage's). The schema below declares only the fields of ONNX's ``onnx.proto`` that we read,
with their field numbers from that file; protobuf skips the rest (the weights) unparsed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from artifact.card import INPUT_NAME, METADATA_CARD_KEY, OUTPUT_NAMES, ModelCard
from artifact.errors import ModelLoadError

# onnx.proto: ModelProto.graph = 7, ModelProto.metadata_props = 14; GraphProto.initializer = 5,
# .input = 11, .output = 12; ValueInfoProto.name = 1, .type = 2; TypeProto.tensor_type = 1;
# TypeProto.Tensor.shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1 (int64),
# .dim_param = 2; TensorProto.name = 8; StringStringEntryProto.key = 1, .value = 2.
_SCHEMA: dict[str, list[tuple[str, int, str | None]]] = {
    "Entry": [("key", 1, None), ("value", 2, None)],
    "Named": [("name", 1, None), ("type", 2, "Type")],
    "Type": [("tensor_type", 1, "TensorType")],
    "TensorType": [("shape", 2, "Shape")],
    "Shape": [("dim", 1, "Dim")],
    "Dim": [("dim_value", 1, "int64"), ("dim_param", 2, None)],
    "Tensor": [("name", 8, None)],
    "Graph": [("initializer", 5, "Tensor"), ("input", 11, "Named"), ("output", 12, "Named")],
    "Model": [("graph", 7, "Graph"), ("metadata_props", 14, "Entry")],
}
_REPEATED = {"initializer", "input", "output", "metadata_props", "dim"}


# The scalar field types above (None: a string); any other type name is a message.
_SCALARS = {
    None: descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
}


@cache
def _model_message() -> Any:
    """The message class for the subset of ``onnx.ModelProto`` declared in ``_SCHEMA``."""
    file = descriptor_pb2.FileDescriptorProto(
        name="xception_onnx_subset.proto", package="xception_onnx_subset", syntax="proto3"
    )
    field = descriptor_pb2.FieldDescriptorProto
    for message_name, fields in _SCHEMA.items():
        message = file.message_type.add(name=message_name)
        for name, number, type_name in fields:
            message.field.add(
                name=name,
                number=number,
                label=field.LABEL_REPEATED if name in _REPEATED else field.LABEL_OPTIONAL,
                type=_SCALARS.get(type_name, field.TYPE_MESSAGE),
                type_name=None if type_name in _SCALARS else f".xception_onnx_subset.{type_name}",
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("xception_onnx_subset.Model"))


@dataclass(frozen=True)
class ModelFile:
    """An exported model file: its path, its card, and its graph's input and output names."""

    path: Path
    card: ModelCard
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def read_model_file(path: Path, card: ModelCard | None = None) -> ModelFile:
    """The file's card (or ``card``, for a model being exported whose card is not embedded
    yet) and signature; ModelLoadError, naming the file, when it is not one of ours."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot load {path}: {exc.strerror or exc}") from exc
    try:
        model = _model_message().FromString(data)
    except Exception as exc:  # protobuf's DecodeError, or a field of the wrong wire type
        raise ModelLoadError(f"cannot load {path}: not an ONNX model ({exc})") from exc
    initializers = {tensor.name for tensor in model.graph.initializer}
    found = ModelFile(
        path=path,
        card=card if card is not None else _card(model, path),
        inputs=tuple(i.name for i in model.graph.input if i.name not in initializers),
        outputs=tuple(o.name for o in model.graph.output),
    )
    if found.inputs != (INPUT_NAME,) or found.outputs != OUTPUT_NAMES:
        raise ModelLoadError(
            f"{path}: inputs {list(found.inputs)} / outputs {list(found.outputs)} are not the "
            f"serving contract ([{INPUT_NAME!r}] / {list(OUTPUT_NAMES)})"
        )
    if card is None:  # a given card is an export's own, for a graph it is still building on
        _check_card_against_graph(path, found.card, {v.name: _dims(v) for v in model.graph.input},
                                  {v.name: _dims(v) for v in model.graph.output})  # fmt: skip
    return found


def _dims(value: Any) -> tuple[int | None, ...]:
    """A graph value's shape: each dimension's size, None where it is symbolic (the batch)."""
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.dim_value > 0 and not d.dim_param else None for d in dims)


def _check_card_against_graph(
    path: Path,
    card: ModelCard,
    inputs: dict[str, tuple[int | None, ...]],
    outputs: dict[str, tuple[int | None, ...]],
) -> None:
    """The card's sizes are the graph's (where the graph states them): a card that claimed
    10 classes over a 1000-class graph loaded, then /classify failed (an IndexError) and
    /features said 16 dimensions over 2048 values."""
    height, width = card.input_size
    classes, features = OUTPUT_NAMES
    expected = {
        f"input {INPUT_NAME!r}": (inputs.get(INPUT_NAME, ()), (None, height, width, 3)),
        f"output {classes!r}": (outputs[classes], (None, card.num_classes)),
        f"output {features!r}": (outputs[features], (None, card.num_features)),
    }
    for what, (graph, carded) in expected.items():
        if not graph:
            continue  # the graph states no shape here: nothing to compare the card with
        if len(graph) != len(carded) or any(
            g is not None and c is not None and g != c for g, c in zip(graph, carded, strict=True)
        ):
            shown = [g if g is not None else "N" for g in graph]
            raise ModelLoadError(
                f"{path}: the card says {what} = {[c if c else 'N' for c in carded]}, the "
                f"graph {shown}: the card was not written for this graph (re-export it)"
            )


def _card(model: Any, path: Path) -> ModelCard:
    raw = next((p.value for p in model.metadata_props if p.key == METADATA_CARD_KEY), None)
    if raw is None:
        raise ModelLoadError(
            f"{path} has no '{METADATA_CARD_KEY}' metadata: export it with xception-export"
        )
    try:
        return ModelCard.model_validate(json.loads(raw))
    except ValueError as exc:  # bad JSON, or a card that fails validation
        problem = str(exc).splitlines()[0]
        raise ModelLoadError(f"{path} has an unreadable model card: {problem}") from exc
