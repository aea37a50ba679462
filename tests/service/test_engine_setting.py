"""XCEPTION_ENGINE reaches the runtime, and a bf16 model on a CPU without bf16 stops the
service with one line that names the alternatives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from artifact.openvino_engine import BF16_ENV
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
    errors = [line for line in result.stderr.splitlines() if "bf16" in line]
    assert len(errors) == 1, result.stderr
    assert "--precision fp32 (or int8)" in errors[0]
