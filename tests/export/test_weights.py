"""Weights sources: a local state dict (the air-gapped route), other archs, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
from safetensors.torch import save_file

from artifact.card import ModelCard
from export.errors import ExportError
from export.options import ExportOptions
from export.pipeline import export_model
from tests.conftest import EXPORT_SEED


def _run(model_dir: Path, image: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"image": image})


@pytest.fixture(scope="module")
def same_weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported_model fixture's random weights, saved as a .safetensors state dict."""
    torch.manual_seed(EXPORT_SEED)
    model = timm.create_model("legacy_xception", pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "xception.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def test_state_dict_file_gives_the_same_outputs(
    exported_model: Path, same_weights_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "xception" / "2"
    card = export_model(ExportOptions(out=out, weights=str(same_weights_file)))
    assert card.weights == str(same_weights_file.resolve())
    image = np.random.default_rng(7).integers(0, 256, (2, 299, 299, 3), dtype=np.uint8)
    for got, want in zip(_run(out, image), _run(exported_model, image), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_checkpoint_wrapped_pth_loads(tmp_path: Path) -> None:
    # Training scripts save {"state_dict": ...} with DataParallel's "module." prefix.
    model = timm.create_model("legacy_xception", pretrained=False)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    path = tmp_path / "checkpoint.pth"
    torch.save(wrapped, path)
    from export.build.model import create_model

    loaded = create_model("legacy_xception", str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_state_dict_of_another_arch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(ExportError, match=r"does not fit --arch legacy_xception: \d+ missing"):
        export_model(ExportOptions(out=tmp_path / "m" / "1", weights=str(path)))
    assert not (tmp_path / "m" / "1").exists()


def test_file_that_is_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(ExportError, match="cannot read a state dict"):
        export_model(ExportOptions(out=tmp_path / "m" / "1", weights=str(path)))


def test_vgg16_exports(tmp_path: Path) -> None:
    out = tmp_path / "vgg16" / "1"
    card = export_model(ExportOptions(out=out, arch="vgg16", weights="none"))
    assert (card.arch, card.input_size, card.num_classes) == ("vgg16", (224, 224), 1000)
    assert card.resize.interpolation == "bilinear"
    assert card.resize.scale_size(card.input_size) == (256, 256)
    assert card.mean == pytest.approx((0.485, 0.456, 0.406))
    probs, feats = _run(out, np.zeros((2, 224, 224, 3), dtype=np.uint8))
    assert probs.shape == (2, 1000) and feats.shape == (2, card.num_features)
    on_disk = ModelCard.model_validate_json((out / "model.json").read_text())
    assert on_disk.verification and on_disk.verification["max_abs_diff_probabilities"] <= 1e-4


def test_labels_file_sets_the_head(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n\nbird\n")
    out = tmp_path / "pets" / "1"
    card = export_model(ExportOptions(out=out, arch="resnet18", weights="none", labels_file=labels))
    assert (card.labels, card.num_classes) == (["cat", "dog", "bird"], 3)
    probs, _ = _run(out, np.zeros((1, 224, 224, 3), dtype=np.uint8))
    assert probs.shape == (1, 3)
