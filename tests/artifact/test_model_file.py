"""The card and signature read without an engine, checked against the onnx package's own
parser of the same file (the reference), and refusals that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from artifact.card import METADATA_CARD_KEY, ModelCard
from artifact.errors import ModelLoadError
from artifact.model_file import read_model_file
from tests.artifact.test_engines import with_card


def test_the_card_and_signature_are_what_onnx_reads(exported_model: Path) -> None:
    path = exported_model / "model.onnx"
    reference = onnx.load(str(path))
    embedded = {p.key: p.value for p in reference.metadata_props}[METADATA_CARD_KEY]
    found = read_model_file(path)
    assert found.card == ModelCard.model_validate(json.loads(embedded))
    assert found.inputs == tuple(i.name for i in reference.graph.input)
    assert found.outputs == tuple(o.name for o in reference.graph.output)


def test_a_given_card_is_used_instead_of_the_embedded_one(exported_model: Path) -> None:
    path = exported_model / "model.onnx"
    card = read_model_file(path).card.model_copy(update={"version": "7"})
    assert read_model_file(path, card).card.version == "7"


def test_not_onnx_and_not_ours_are_refused_naming_the_file(
    exported_model: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(ModelLoadError, match=r"garbage\.onnx"):
        read_model_file(garbage)
    with pytest.raises(ModelLoadError, match=r"missing\.onnx"):
        read_model_file(tmp_path / "missing.onnx")
    broken = with_card(exported_model / "model.onnx", tmp_path / "b.onnx", num_classes=0)
    with pytest.raises(ModelLoadError, match="unreadable model card"):
        read_model_file(broken)
    renamed = onnx.load(str(exported_model / "model.onnx"))
    renamed.graph.output[1].name = "embeddings"
    onnx.save(renamed, str(tmp_path / "renamed.onnx"))
    with pytest.raises(ModelLoadError, match="not the serving contract"):
        read_model_file(tmp_path / "renamed.onnx")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        # The card: 10 classes and 16 features over the 1000/2048 graph.
        ({"num_classes": 10, "labels": [f"c{i}" for i in range(10)]}, "'probabilities'"),
        ({"num_features": 16}, "'features'"),
        ({"input_size": [224, 224]}, "'image'"),
    ],
    ids=["classes", "features", "input-size"],
)
def test_a_card_that_disagrees_with_its_graph_is_refused(
    exported_model: Path, tmp_path: Path, changes: dict, named: str
) -> None:
    # The reference: the graph's shapes as the onnx package reads them.
    graph = onnx.load(str(exported_model / "model.onnx"), load_external_data=False).graph
    sizes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][1:] for v in
             [*graph.input, *graph.output]}  # fmt: skip
    assert sizes == {"image": [299, 299, 3], "probabilities": [1000], "features": [2048]}
    lying = with_card(exported_model / "model.onnx", tmp_path / "lying.onnx", **changes)
    with pytest.raises(ModelLoadError, match=rf"lying\.onnx: the card says \w+ {named}.*re-export"):
        read_model_file(lying)
