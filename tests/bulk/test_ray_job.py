"""``xception-bulk`` on a local Ray with 2 CPUs: the same numbers as the single-process
``xception-features`` and as ONNX Runtime run directly, unreadable files in the ``error``
column, and a rerun that only does what is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime
from bulk import features as single_process
from bulk import ray_job
from bulk.sources import SourceError, list_source

DATA = Path(__file__).resolve().parents[1] / "data"


def rows(out: Path) -> dict[str, dict]:
    """The output's rows by path, asserting first that no path was written twice (a dict
    alone would hide a duplicate)."""
    table = ds.dataset(str(out), format="parquet").to_table().to_pylist()
    paths = [row["path"] for row in table]
    assert len(paths) == len(set(paths)), f"rows written twice: {sorted(paths)}"
    return {row["path"]: row for row in table}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    shutil.copytree(DATA, folder)
    return folder


def test_bulk_matches_single_process_and_resumes(
    exported_model: Path, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.parquet"
    args = [str(source), "--model", str(exported_model), "--out", str(out), "--num-cpus", "2",
            "--batch-size", "4", "--top-k", "3"]  # fmt: skip
    assert ray_job.main(args) == 0
    written = rows(out)
    assert set(written) == {str(p) for p in source.iterdir()}
    broken = written.pop(str(source / "multipage_rgb.tif"))
    assert broken["features"] is None and "cannot" in broken["error"]
    assert all(row["error"] is None for row in written.values())

    # The single-process tool on the same folder (it skips the broken file).
    npy = tmp_path / "single.npy"
    assert (
        single_process.main([str(source), "--model", str(exported_model), "--out", str(npy)]) == 0
    )
    paths = (tmp_path / "single.paths.txt").read_text().split()  # relative to the folder
    assert len(paths) == len(written) == 5
    for path, vector in zip(paths, np.load(npy), strict=True):
        bulk_vector = written[str(source / path)]["features"]
        np.testing.assert_allclose(bulk_vector, vector, rtol=1e-4, atol=1e-5)
    # Top-k against ONNX Runtime on the same pixels, ranked here by sorting.
    runtime = ModelRuntime(exported_model / "model.onnx", "cpu")
    preprocess = Preprocessor.for_local_files(runtime.card)
    for path, row in written.items():
        probabilities = runtime.run(preprocess(Path(path).read_bytes(), "x")[None])[0][0]
        best = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:3]
        assert row["labels"] == [runtime.card.labels[i] for i in best]
        np.testing.assert_allclose(row["scores"], probabilities[best], rtol=1e-4)

    capsys.readouterr()
    assert ray_job.main(args) == 0  # nothing new: Ray is not even started
    assert "wrote 0 rows" in capsys.readouterr().out
    assert ds.dataset(str(out), format="parquet").count_rows() == 6
    shutil.copy(source / "chelsea.jpg", source / "chelsea-again.jpg")
    assert ray_job.main(args) == 0
    assert "wrote 1 rows" in capsys.readouterr().out
    again = rows(out)  # no duplicates: the six rows already there were not written again
    assert len(again) == 7 and ds.dataset(str(out), format="parquet").count_rows() == 7
    np.testing.assert_allclose(
        again[str(source / "chelsea-again.jpg")]["features"],
        again[str(source / "chelsea.jpg")]["features"],
        rtol=1e-5,
        atol=1e-5,
    )  # each run measures its engine: fp32 ORT and OpenVINO differ by ~1e-12 near 0


def test_sources_folder_glob_and_lists(source: Path, tmp_path: Path) -> None:
    folder = list_source(str(source))
    assert len(folder) == 6
    assert list_source(str(source / "*.png")) == sorted(str(p) for p in source.glob("*.png"))
    listed = tmp_path / "list.txt"
    listed.write_text("# photos\n" + "\n".join(folder[:2]) + "\n\n")
    assert list_source(str(listed)) == folder[:2]
    import pyarrow as pa

    table = tmp_path / "list.parquet"
    pq.write_table(pa.table({"path": folder[2:4]}), table)
    assert list_source(str(table)) == folder[2:4]
    for bad, message in (
        (tmp_path / "none", "not a folder, a glob"),
        (source / "*.webp", "no file"),
    ):
        with pytest.raises(SourceError, match=message):
            list_source(str(bad))


def test_bad_source_is_one_line(
    exported_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = ray_job.main([str(tmp_path / "missing"), "--model", str(exported_model),
                         "--out", str(tmp_path / "o.parquet")])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("xception-bulk: SOURCE") and err.count("\n") == 1


def test_top_k_above_the_class_count_is_one_line(
    exported_model: Path, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before Ray starts, as the service refuses it (never silently clamped)."""
    out = tmp_path / "o.parquet"
    code = ray_job.main([str(source), "--model", str(exported_model), "--out", str(out),
                         "--top-k", "1001"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert (
        err
        == "xception-bulk: --top-k: top_k=1001 must be between 1 and 1000 (the model's classes)\n"
    )
    assert not out.exists()
