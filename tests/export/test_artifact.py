"""The exported artifact meets the contract in docs/reference.md ("The model artifact")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from artifact.card import ModelCard

CARD_FIELDS = {
    "name", "version", "arch", "weights", "input_size", "resize", "mean", "std", "num_classes",
    "num_features", "labels", "precision", "metrics", "onnx_sha256", "created_at", "versions",
}  # fmt: skip


@pytest.fixture(scope="module")
def session(exported_model: Path) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(exported_model / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def test_input_is_uint8_nhwc_with_dynamic_batch(session: ort.InferenceSession) -> None:
    (inp,) = session.get_inputs()
    assert inp.name == "image"
    assert inp.type == "tensor(uint8)"
    assert isinstance(inp.shape[0], str)  # symbolic: the batch axis is dynamic
    assert inp.shape[1:] == [299, 299, 3]


@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_for_batch(session: ort.InferenceSession, batch: int) -> None:
    assert [o.name for o in session.get_outputs()] == ["probabilities", "features"]
    image = np.random.default_rng(batch).integers(0, 256, (batch, 299, 299, 3), dtype=np.uint8)
    probs, feats = session.run(None, {"image": image})
    assert probs.shape == (batch, 1000) and probs.dtype == np.float32
    assert feats.shape == (batch, 2048) and feats.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.isfinite(feats).all()


def test_opset_and_checker(exported_model: Path) -> None:
    proto = onnx.load(str(exported_model / "model.onnx"))
    opsets = {o.domain: o.version for o in proto.opset_import}
    assert opsets.get("", opsets.get("ai.onnx", 0)) >= 17
    onnx.checker.check_model(proto, full_check=True)


def test_card_in_metadata_equals_model_json(exported_model: Path) -> None:
    meta = ort.InferenceSession(
        str(exported_model / "model.onnx"), providers=["CPUExecutionProvider"]
    ).get_modelmeta()
    embedded = json.loads(meta.custom_metadata_map["model_card"])
    on_disk = json.loads((exported_model / "model.json").read_text())
    assert set(on_disk) >= CARD_FIELDS
    assert CARD_FIELDS - {"onnx_sha256"} <= set(embedded)
    # model.json = the embedded card + what only exists once the file is written.
    assert {
        k: v for k, v in on_disk.items() if k not in ("onnx_sha256", "verification")
    } == embedded
    onnx_bytes = (exported_model / "model.onnx").read_bytes()
    assert on_disk["onnx_sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert json.loads(meta.custom_metadata_map["labels"]) == on_disk["labels"]


def test_card_describes_legacy_xception(exported_model: Path) -> None:
    card = ModelCard.model_validate_json((exported_model / "model.json").read_text())
    assert (card.name, card.version, card.arch, card.weights) == (
        "xception", "1", "legacy_xception", "none",
    )  # fmt: skip
    assert card.num_params == 22_855_952
    assert card.input_size == (299, 299)
    assert card.mean == card.std == (0.5, 0.5, 0.5)
    assert card.resize.mode == "crop" and card.resize.interpolation == "bicubic"
    assert card.resize.crop_pct == pytest.approx(0.8975)
    assert card.resize.scale_size(card.input_size) == (333, 333)
    assert (card.num_classes, card.num_features, card.precision) == (1000, 2048, "fp32")
    assert len(card.labels) == 1000 and card.labels[281] == "tabby, tabby cat"
    assert set(card.versions) >= {"torch", "timm", "onnx"}


def test_parity_figures_recorded_within_bounds(exported_model: Path) -> None:
    figures = json.loads((exported_model / "model.json").read_text())["verification"]
    assert figures["batch"] >= 2
    assert 0 <= figures["max_abs_diff_probabilities"] <= 1e-4
    assert 0 <= figures["max_rel_diff_features"] <= 1e-3


def test_no_partial_folders_left(exported_model: Path) -> None:
    assert sorted(p.name for p in exported_model.parent.iterdir()) == ["1"]
    assert sorted(p.name for p in exported_model.iterdir()) == ["model.json", "model.onnx"]


def test_resize_policy_takes_timms_defaults_and_refuses_unknown_crop_modes() -> None:
    """Without a crop_pct, the card scales as timm's own eval transform does (not 1.0); a
    crop mode the card does not know is an export error, never a silent centre crop."""
    from timm.data.transforms_factory import transforms_imagenet_eval

    from export.build.card import resize_policy
    from export.errors import ExportError

    policy = resize_policy({"interpolation": "bicubic"})  # no crop_pct, no crop_mode
    timm_resize = transforms_imagenet_eval(img_size=224, crop_pct=None).transforms[0]
    assert policy.mode == "crop"
    assert policy.scale_size((224, 224))[0] == timm_resize.size  # 256 = 224 / 0.875
    assert resize_policy({"crop_mode": "squash", "crop_pct": 0.9}).mode == "squash"
    with pytest.raises(ExportError, match="crop_mode 'centre'"):
        resize_policy({"crop_mode": "centre", "crop_pct": 0.9})
