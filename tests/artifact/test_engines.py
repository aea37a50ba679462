"""The engine choice: the card's engine by default, a setting to force one, and bf16 refused
in one line where the CPU cannot run it (simulated with XCEPTION_CPU_BF16=off on CPUs that can).

The reference for OpenVINO's answers is ONNX Runtime on the same file, not OpenVINO itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from artifact.card import METADATA_CARD_KEY
from artifact.errors import ModelLoadError
from artifact.openvino_engine import BF16_ENV, cpu_bf16
from artifact.runtime import CPU_EP, ModelRuntime


def with_card(source: Path, out: Path, **changes: Any) -> Path:
    """A copy of an exported model whose embedded card has ``changes``."""
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == METADATA_CARD_KEY:
            prop.value = json.dumps({**json.loads(prop.value), **changes})
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def images(count: int = 3) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (count, 299, 299, 3), dtype=np.uint8)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_openvino_forced_on_an_fp32_model_answers_as_onnx_runtime(exported_model: Path) -> None:
    path = exported_model / "model.onnx"
    reference = ModelRuntime(path, "cpu", 2)
    forced = ModelRuntime(path, "cpu", 2, engine="openvino")
    assert reference.provider == CPU_EP and forced.provider == "OpenVINO CPU (fp32)"
    assert forced.card == reference.card  # read from the same file by the other engine
    batch = images()
    p_ref, f_ref = reference.run(batch)
    p_ov, f_ov = forced.run(batch)
    assert (p_ref.argmax(axis=1) == p_ov.argmax(axis=1)).all()
    assert cosines(f_ref, f_ov).min() > 0.9999
    assert np.abs(p_ref - p_ov).max() < 1e-3


def test_the_card_names_the_engine(exported_model: Path, tmp_path: Path) -> None:
    path = with_card(exported_model / "model.onnx", tmp_path / "m.onnx", engine="openvino")
    assert ModelRuntime(path, "cpu", 2).provider == "OpenVINO CPU (fp32)"
    assert ModelRuntime(path, "cpu", 2, engine="onnxruntime").provider == CPU_EP


def bf16_copy(exported_model: Path, tmp_path: Path) -> Path:
    return with_card(
        exported_model / "model.onnx", tmp_path / "bf16" / "model.onnx",
        precision="bf16", engine="openvino", inference_precision="bf16",
    )  # fmt: skip


def test_a_bf16_model_is_refused_on_a_cpu_without_bf16(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BF16_ENV, "off")
    path = bf16_copy(exported_model, tmp_path)
    with pytest.raises(ModelLoadError, match=r"bf16 model but .*--precision fp32 \(or int8\)"):
        ModelRuntime(path, "cpu", 2)
    # Forced onto ONNX Runtime it runs, in fp32, and says so.
    assert ModelRuntime(path, "cpu", 2, engine="onnxruntime").provider == CPU_EP


def test_openvino_would_compile_bf16_as_f32_silently_where_the_cpu_lacks_it(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without our capability check, OpenVINO turns a bf16 request into f32 and says nothing:
    the check after compiling catches it even when the capability check is bypassed."""
    if cpu_bf16()[0]:
        pytest.skip("this CPU has bf16")
    import artifact.openvino_engine as engine

    path = bf16_copy(exported_model, tmp_path)
    monkeypatch.setattr(engine, "cpu_bf16", lambda core=None: (True, "pretend"))
    with pytest.raises(ModelLoadError, match="OpenVINO compiled it as"):
        ModelRuntime(path, "cpu", 2)


def test_export_refuses_bf16_in_one_line_before_any_work(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "export", "--weights", "none", "--precision", "bf16",
         "--calibration", str(tmp_path), "--out", str(tmp_path / "m" / "1")],
        capture_output=True, text=True, timeout=120, env={**os.environ, BF16_ENV: "off"},
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--precision bf16" in lines[0] and "--precision fp32 (or int8)" in lines[0]
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(not cpu_bf16()[0], reason="needs a CPU with AVX512_BF16 or AMX")
def test_bf16_export_runs_on_openvino_and_agrees_with_fp32(
    exported_model: Path, tmp_path: Path
) -> None:
    """End to end where the CPU has bf16: the export's precision check, then the runtime."""
    from PIL import Image

    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i, pixels in enumerate(images(8)):
        Image.fromarray(pixels).save(calibration / f"{i}.png")
    out = tmp_path / "bf16" / "xception" / "1"
    subprocess.run(
        [sys.executable, "-m", "export", "--weights", "none", "--precision", "bf16",
         "--calibration", str(calibration), "--out", str(out), "--min-cosine", "0.99"],
        check=True, timeout=600,
    )  # fmt: skip
    runtime = ModelRuntime(out / "model.onnx", "cpu", 2)
    assert runtime.provider == "OpenVINO CPU (bf16)" and runtime.card.precision == "bf16"
    assert runtime.card.precision_check and runtime.card.precision_check["cosine_mean"] > 0.99
    reference = ModelRuntime(out / "model.onnx", "cpu", 2, engine="onnxruntime")
    batch = images()
    assert cosines(reference.run(batch)[1], runtime.run(batch)[1]).min() > 0.99
