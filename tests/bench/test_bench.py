"""The benchmark runs end to end on a tiny budget (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifact.engines.openvino_engine import cpu_bf16
from bench.run import main


def test_benchmark_writes_its_results(exported_model: Path, tmp_path: Path) -> None:
    args = [
        "--model",
        str(exported_model),
        "--device",
        "cpu",
        "--batch-sizes",
        "1,2",
        "--concurrency",
        "1,3",
        "--requests",
        "6",
        "--seconds",
        "0.3",
        "--out",
        str(tmp_path),
        "--label",
        "smoke",
    ]
    assert main(args) == 0
    # Named after the engine the loader measured faster: cpu-… (ORT) or openvino-cpu-….
    (json_file,) = tmp_path.glob("*cpu*-fp32-smoke.json")
    results = json.loads(json_file.read_text())
    assert [r["batch_size"] for r in results["raw_engine"]] == [1, 2]
    # Both protocols at each concurrency: multipart /classify and binary v2 infer.
    assert [(r["protocol"], r["concurrency"]) for r in results["service"]] == [
        ("multipart", 1), ("v2", 1), ("multipart", 3), ("v2", 3),
    ]  # fmt: skip
    for row in results["service"]:
        assert row["errors"] == 0 and row["requests"] == 6
        assert row["images_per_s"] > 0 and row["ratio_to_raw_best"] > 0
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert results["rss_mb"]["peak_mb"] > 0
    assert results["decode"]["ms_mean"] > 0
    markdown = json_file.with_suffix(".md").read_text()
    assert "÷ raw best" in markdown and "raw engine batch" in markdown and "| v2 |" in markdown
    assert "(flags: " in markdown and "ONNX Runtime " in markdown


def test_bulk_benchmark_writes_its_results(exported_model: Path, tmp_path: Path) -> None:
    from bench.bulk import main as bulk_main

    args = ["--model", str(exported_model), "--images", "6", "--num-cpus", "2",
            "--batch-size", "2", "--seconds", "0.3", "--out", str(tmp_path)]  # fmt: skip
    assert bulk_main(args) == 0
    (json_file,) = tmp_path.glob("*-bulk.json")
    results = json.loads(json_file.read_text())
    for key in ("raw_engine_images_per_s", "single_process_images_per_s", "bulk_images_per_s"):
        assert results[key] > 0
    assert results["bulk_actors"] == 2 and results["images"] == 6
    assert "÷ raw engine" in json_file.with_suffix(".md").read_text()


def test_engines_benchmark_compares_both_engines_with_the_cpu_flags(
    exported_model: Path, tmp_path: Path
) -> None:
    from bench.engines import main as engines_main

    args = ["--model", str(exported_model), "--batch-sizes", "1", "--seconds", "0.3",
            "--out", str(tmp_path)]  # fmt: skip
    assert engines_main(args) == 0
    (json_file,) = tmp_path.glob("*-engines.json")
    results = json.loads(json_file.read_text())
    providers = [row["provider"] for row in results["rows"]]
    assert providers[:2] == ["CPUExecutionProvider", "OpenVINO CPU (fp32)"]
    # bf16 is measured where the CPU has it (it crashed on OpenVINO's precision check there).
    assert ("OpenVINO CPU (bf16)" in providers) == cpu_bf16()[0]
    assert results["rows"][0]["ratio_to_ort_fp32"] == 1.0
    assert results["openvino"] and "cpu_flags" in results
    markdown = json_file.with_suffix(".md").read_text()
    assert "flags:" in markdown and "÷ ONNX Runtime fp32" in markdown


def test_peers_benchmark_drives_every_server_with_the_same_load(
    exported_model: Path, tmp_path: Path
) -> None:
    from bench.peers.compare import main as peers_main

    args = ["--model", str(exported_model), "--concurrency", "2", "--requests", "6",
            "--seconds", "0.3", "--out", str(tmp_path)]  # fmt: skip
    assert peers_main(args) == 0
    (json_file,) = tmp_path.glob("*-peers.json")
    results = json.loads(json_file.read_text())
    rows = {row["server"]: row for row in results["rows"]}
    assert set(rows) == {
        "xception-serve", "naive FastAPI + ORT", "naive FastAPI + OpenVINO", "LitServe", "Mosec"
    }  # fmt: skip
    for row in rows.values():  # every peer answered every request with 200
        assert row["errors"] == 0 and row["requests"] == 6 and row["images_per_s"] > 0
    assert rows["xception-serve"]["ratio_to_ours"] == 1.0
    # The decode-inclusive bound: the raw rate and the decode CPU sharing the cores.
    raw, decode_s = results["raw_best_images_per_s"], results["decode"]["ms_mean"] / 1000
    cores = results["cores"]
    bound = results["decode_inclusive_bound_images_per_s"]
    assert bound == pytest.approx(1 / (1 / raw + decode_s / cores)) and bound < raw
    assert results["raw_engine_choice"]["how"] == "measured"
    assert results["served_engine"]["how"] == "measured"
    markdown = json_file.with_suffix(".md").read_text()
    assert "flags:" in markdown and "decode-inclusive bound" in markdown


def test_top_frames_counts_self_and_inclusive_shares_per_thread_kind() -> None:
    from bench.profile import top_frames

    raw = (
        "thread (1): MainThread;run (uvicorn/server.py:10);parse (service/edge/server.py:90) 3\n"
        "thread (1): MainThread;run (uvicorn/server.py:12) 1\n"
        "thread (2): inference_0;infer (service/core/batcher.py:5);run (ort.py:1) 6\n"
    )
    result = top_frames(raw)
    assert result["samples"] == 10
    assert result["thread_share"] == {"inference": 0.6, "event loop": 0.4}
    self_share = {(r["thread"], r["frame"]): r["share"] for r in result["self"]}
    assert self_share[("event loop", "parse (service/edge/server.py)")] == 0.3
    assert self_share[("event loop", "run (uvicorn/server.py)")] == 0.1  # line numbers merged
    inclusive = {(r["thread"], r["frame"]): r["share"] for r in result["inclusive"]}
    assert inclusive == {  # only this project's frames: where our own calls spend
        ("inference", "infer (service/core/batcher.py)"): 0.6,
        ("event loop", "parse (service/edge/server.py)"): 0.3,
    }


def test_profile_benchmark_writes_a_flame_graph_and_a_table(
    exported_model: Path, tmp_path: Path
) -> None:
    from bench.profile import main as profile_main

    args = ["--model", str(exported_model), "--seconds", "3", "--concurrency", "2",
            "--out", str(tmp_path)]  # fmt: skip
    assert profile_main(args) == 0
    (json_file,) = tmp_path.glob("*-profile.json")
    results = json.loads(json_file.read_text())
    assert results["samples"] > 0 and "inference" in results["thread_share"]
    assert (tmp_path / results["flame_graph"]).read_text().lstrip().startswith("<?xml")
