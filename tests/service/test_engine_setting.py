"""XCEPTION_ENGINE reaches the runtime; by default (auto) the engine measured faster at load
serves, and says so in /v1/models, the v2 metadata and /metrics; a bf16 model on a CPU
without bf16 stops the service with one line that names the alternatives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from artifact.engines import ENGINE_NAMES
from artifact.engines.openvino_engine import BF16_ENV
from artifact.runtime import CPU_EP
from service.app import create_app
from tests.artifact.test_engines import bf16_copy
from tests.service.conftest import files, image_bytes, make_settings, wait_ready


def test_engine_setting_serves_on_openvino(exported_model: Path, client: TestClient) -> None:
    upload = files(("a.jpg", image_bytes("chelsea.jpg")))
    reference = client.post("/classify?top_k=3", files=upload).json()
    settings = make_settings(exported_model, engine="openvino")
    with TestClient(create_app(settings)) as openvino:
        wait_ready(openvino)
        assert openvino.get("/v1/models").json()["runtime"]["provider"] == "OpenVINO CPU (fp32)"
        upload = files(("a.jpg", image_bytes("chelsea.jpg")))
        answer = openvino.post("/classify?top_k=3", files=upload).json()
    ours = answer["results"][0]["predictions"]
    theirs = reference["results"][0]["predictions"]
    assert [label["index"] for label in ours] == [label["index"] for label in theirs]
    for mine, other in zip(ours, theirs, strict=True):
        assert mine["score"] == pytest.approx(other["score"], rel=1e-3)


def test_the_measured_choice_is_visible_where_operators_look(client: TestClient) -> None:
    """The shared client runs the default, XCEPTION_ENGINE=auto: both engines timed at load."""
    runtime = client.get("/v1/models").json()["runtime"]
    engine = runtime["engine"]
    assert engine["how"] == "measured" and set(engine["images_per_s"]) == set(ENGINE_NAMES)
    faster = max(engine["images_per_s"], key=lambda name: engine["images_per_s"][name])
    assert engine["engine"] == faster
    assert runtime["provider"] == engine["provider"]
    assert engine["provider"] == (CPU_EP if faster == "onnxruntime" else "OpenVINO CPU (fp32)")
    metadata = client.get("/v2/models/xception").json()
    assert metadata["engine"] == {k: engine[k] for k in metadata["engine"]}
    assert metadata["engine"]["how"] == "measured"
    scrape = client.get("/metrics").text
    assert (
        f'xception_engine_info{{engine="{faster}",how="measured",model="xception",version="1"}}'
        " 1.0" in scrape
    )
    for name, rate in engine["images_per_s"].items():
        line = next(
            line
            for line in scrape.splitlines()
            if line.startswith("xception_engine_trial_images_per_second{")
            and f'engine="{name}"' in line
        )
        assert float(line.split()[-1]) == pytest.approx(rate, abs=0.01)


def test_a_forced_engine_is_named_as_forced(exported_model: Path) -> None:
    with TestClient(create_app(make_settings(exported_model, engine="onnxruntime"))) as forced:
        wait_ready(forced)
        engine = forced.get("/v1/models").json()["runtime"]["engine"]
        scrape = forced.get("/metrics").text
    assert engine["engine"] == "onnxruntime" and engine["how"] == "forced"
    assert 'engine="onnxruntime",how="forced",model="xception"' in scrape
    assert "xception_engine_trial_images_per_second{" not in scrape  # nothing was measured
    assert engine["why"] == "XCEPTION_ENGINE=onnxruntime" and "images_per_s" not in engine


def test_bf16_model_on_a_cpu_without_bf16_stops_the_service_in_one_line(
    exported_model: Path, tmp_path: Path
) -> None:
    model = bf16_copy(exported_model, tmp_path).parent
    result = subprocess.run(
        [sys.executable, "-m", "service"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "XCEPTION_MODEL": str(model), "XCEPTION_DEVICE": "cpu",
             BF16_ENV: "off"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    said = result.stderr.splitlines()
    errors = [line for line in said if line.startswith("xception-serve:")]
    assert len(errors) == 1 and "bf16" in errors[0], result.stderr
    assert "--precision fp32 (or int8)" in errors[0]
    # XCEPTION_CPU_BF16 is the engines' own switch, not an unknown setting to warn about.
    assert not [line for line in said if "WARNING" in line], result.stderr
