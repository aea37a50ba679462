"""Transfer learning on a generated 3-class folder, offline, with real (random-init) Xception."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from artifact.card import ModelCard
from artifact.preprocess import Preprocessor
from bulk.features import main as features_main
from export.errors import ExportError
from export.options import ExportOptions, TrainOptions
from export.pipeline import export_model
from service.app import create_app
from tests.export.synthetic import CLASSES, draw, make_dataset
from tests.service.conftest import files, make_settings, wait_ready


@pytest.fixture(scope="module")
def tuned(dataset: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "shapes" / "1"
    train = TrainOptions(data=dataset, epochs_head=30, epochs_finetune=1, cache_dir=cache_dir)
    export_model(ExportOptions(out=out, weights="none", train=train))
    return out


def report(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "report.json").read_text())


def test_stage1_head_separates_the_classes(tuned: Path) -> None:
    stage1 = report(tuned)["stage1"]
    assert stage1["epochs"] == 30
    assert stage1["best_val_accuracy"] >= 0.9


def test_stage2_ran_and_everything_was_written(tuned: Path) -> None:
    data = report(tuned)
    assert data["stage2"]["epochs"] == 1 and len(data["stage2"]["history"]) == 1
    for name in (
        "model.onnx",
        "model.json",
        "report.json",
        "report.md",
        "curves.png",
        "confusion.png",
    ):
        assert (tuned / name).is_file(), name
    for image in ("curves.png", "confusion.png"):
        assert (tuned / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tuned / "report.md").read_text()
    assert "| class | precision | recall | F1 | support |" in markdown


def test_dataset_accounting(tuned: Path) -> None:
    data = report(tuned)["dataset"]
    assert data["classes"] == ["circle", "square", "triangle"]
    assert data["unreadable"] == ["circle/broken.jpg"]
    assert data["ignored_files"] == 1
    assert data["images"] == 90
    counts = data["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == 90
    assert all(counts["test"][c] >= 4 for c in CLASSES)  # stratified


def test_card_carries_labels_weights_and_metrics(tuned: Path) -> None:
    card = ModelCard.model_validate_json((tuned / "model.json").read_text())
    assert card.labels == ["circle", "square", "triangle"] and card.num_classes == 3
    assert (
        card.weights.startswith("fine-tuned from none on ")
        and "90 images, 3 classes" in card.weights
    )
    assert card.metrics is not None
    assert card.metrics["test_accuracy"] == report(tuned)["test"]["accuracy"]
    embedded = ort.InferenceSession(str(tuned / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = json.loads(embedded.get_modelmeta().custom_metadata_map["model_card"])
    assert meta["metrics"] == card.metrics


def test_onnx_runtime_agrees_with_the_report(tuned: Path, dataset: Path) -> None:
    card = ModelCard.model_validate_json((tuned / "model.json").read_text())
    session = ort.InferenceSession(str(tuned / "model.onnx"), providers=["CPUExecutionProvider"])
    preprocess = Preprocessor.for_card(card, max_pixels=10**8)
    data = report(tuned)
    test = data["test_samples"]
    pixels = np.stack([preprocess((dataset / rel).read_bytes()) for rel, _ in test])
    predicted = session.run(None, {"image": pixels})[0].argmax(axis=1)
    accuracy = float(np.mean(predicted == np.array([label for _, label in test])))
    assert accuracy == pytest.approx(data["test"]["accuracy"])
    # Fresh images of each class: the model does as well as its report says.
    rng = random.Random(1234)
    fresh = [(kind, draw(kind, rng)) for kind in CLASSES for _ in range(4)]
    arrays = []
    for _, image in fresh:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        arrays.append(preprocess(buffer.getvalue()))
    guesses = session.run(None, {"image": np.stack(arrays)})[0].argmax(axis=1)
    hits = sum(card.labels[g] == kind for g, (kind, _) in zip(guesses, fresh, strict=True))
    assert hits / len(fresh) >= data["test"]["accuracy"] - 0.25


def test_fine_tuned_model_serves(tuned: Path) -> None:
    with TestClient(create_app(make_settings(tuned))) as client:
        wait_ready(client)
        buffer = io.BytesIO()
        draw("square", random.Random(7)).save(buffer, format="JPEG")
        body = client.post("/classify?top_k=3", files=files(("sq.jpg", buffer.getvalue()))).json()
        predictions = body["results"][0]["predictions"]
        assert {p["label"] for p in predictions} == set(CLASSES)
        assert body["model"] == {"name": "shapes", "version": "1"}


def test_features_cache_is_reused(
    tuned: Path, dataset: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """Whichever test filled the shared cache first, this model's 90 vectors are in it, and
    an export with the same weights and preprocessing computes none of them again."""
    cached = Path(report(tuned)["features"]["cache"])
    assert len(list(cached.glob("*.npy"))) == 90
    train = TrainOptions(data=dataset, epochs_head=5, epochs_finetune=0, cache_dir=cache_dir)
    again = export_model(ExportOptions(out=tmp_path / "shapes" / "2", weights="none", train=train))
    assert report(tmp_path / "shapes" / "2")["features"]["computed"] == 0
    assert again.labels == ["circle", "square", "triangle"]


def test_bulk_features_cli(
    tuned: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "feats.npy"
    assert features_main([str(dataset), "--model", str(tuned), "--out", str(out)]) == 0
    vectors = np.load(out)
    paths = (tmp_path / "feats.paths.txt").read_text().splitlines()
    assert vectors.shape == (90, 2048) and len(paths) == 90
    assert "circle/broken.jpg" not in paths and paths[0] == "circle/000.jpg"
    assert "1 unreadable skipped" in capsys.readouterr().out
    parquet = tmp_path / "feats.parquet"
    assert (
        features_main([str(dataset), "--model", str(tuned), "--out", str(parquet), "--normalize"])
        == 0
    )
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    assert table.column("path").to_pylist() == paths
    unit = np.array(table.column("features").to_pylist())
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        unit[0], vectors[0] / np.linalg.norm(vectors[0]), rtol=1e-4, atol=1e-9
    )


@pytest.mark.parametrize("layout", ["one-class", "empty", "labels-too"])
def test_bad_data_folders_fail_clearly(layout: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    labels = None
    if layout == "one-class":
        make_dataset(root, per_class=3)
        for other in ("square", "triangle"):
            for f in (root / other).iterdir():
                f.unlink()
            (root / other).rmdir()
    elif layout == "labels-too":
        make_dataset(root, per_class=3)
        labels = tmp_path / "labels.txt"
        labels.write_text("a\nb\nc\n")
    expected = {
        "one-class": "at least 2",
        "empty": "at least 2",
        "labels-too": "exclude each other",
    }
    with pytest.raises(ExportError, match=expected[layout]):
        export_model(
            ExportOptions(
                out=tmp_path / "m" / "1",
                weights="none",
                labels_file=labels,
                train=TrainOptions(data=root, cache_dir=tmp_path / "cache"),
            )
        )


def test_class_folders_without_images_fail_clearly(tmp_path: Path) -> None:
    for name in ("cats", "dogs"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "notes.txt").write_text("no images here")
    with pytest.raises(ExportError, match="no image files"):
        export_model(
            ExportOptions(
                out=tmp_path / "m" / "1",
                weights="none",
                train=TrainOptions(data=tmp_path / "data", cache_dir=tmp_path / "cache"),
            )
        )


def test_classify_default_top_k_fits_a_three_class_model(tuned: Path) -> None:
    """docs/export.md's cats-vs-dogs walkthrough ends with a plain /classify on a small model."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.conftest import files, image_bytes, make_settings, wait_ready

    with TestClient(create_app(make_settings(tuned))) as app:
        wait_ready(app)
        upload = files(("cat.jpg", image_bytes("chelsea.jpg")))
        response = app.post("/classify", files=upload)
        assert response.status_code == 200, response.text
        assert len(response.json()["results"][0]["predictions"]) == 3
        assert app.post("/classify?top_k=2", files=upload).status_code == 200
        too_many = app.post("/classify?top_k=4", files=upload)
        assert too_many.status_code == 422 and "between 1 and 3" in too_many.text
