"""The engine choice: measured where both engines run the card, a setting to force one, bf16 on
OpenVINO only, and refused in one line where the CPU cannot run it (simulated with
XCEPTION_CPU_BF16=off on CPUs that can).

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
from artifact.engines import ENGINE_NAMES
from artifact.engines.choice import candidates, pick
from artifact.engines.openvino_engine import BF16_ENV, compiled_at, cpu_bf16
from artifact.errors import ModelLoadError
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


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """‖got − want‖ / ‖want‖: fp32 on two engines ~2e-7, bf16 against fp32 ~3e-3 (measured)."""
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


# Between fp32-on-another-engine (~2e-7) and bf16 (~3e-3): which arithmetic really ran.
FP32_TOLERANCE = 1e-4


def test_openvino_forced_on_an_fp32_model_answers_as_onnx_runtime(exported_model: Path) -> None:
    path = exported_model / "model.onnx"
    reference = ModelRuntime(path, "cpu", 2, engine="onnxruntime")
    forced = ModelRuntime(path, "cpu", 2, engine="openvino")
    assert reference.provider == CPU_EP and forced.provider == "OpenVINO CPU (fp32)"
    assert forced.choice.how == "forced" and forced.choice.why == "XCEPTION_ENGINE=openvino"
    batch = images()
    p_ref, f_ref = reference.run(batch)
    p_ov, f_ov = forced.run(batch)
    assert (p_ref.argmax(axis=1) == p_ov.argmax(axis=1)).all()
    # fp32, not bf16: OpenVINO's CPU plugin would pick bf16 on a bf16 CPU unless told.
    assert relative_error(f_ov, f_ref) < FP32_TOLERANCE


def test_openvino_precision_is_checked_as_types_not_text() -> None:
    """OpenVINO answers the compiled precision as ``Type.bf16``, whose text is
    ``<Type: 'bfloat16'>``: the check must compare types (no bf16 CPU needed)."""
    import openvino as ov

    assert compiled_at(ov.Type.bf16, "bf16") and compiled_at(ov.Type.f32, "fp32")
    assert not compiled_at(ov.Type.f32, "bf16") and not compiled_at(ov.Type.bf16, "fp32")


def test_auto_serves_the_engine_it_measured_faster(exported_model: Path, tmp_path: Path) -> None:
    """Both engines run fp32: the loader times them here and serves the faster, whatever
    engine the card names (the card was written on another machine)."""
    for named in ("onnxruntime", "openvino"):
        path = with_card(exported_model / "model.onnx", tmp_path / named / "m.onnx", engine=named)
        runtime = ModelRuntime(path, "cpu", 2)
        choice = runtime.choice
        assert choice.how == "measured" and set(choice.images_per_s) == set(ENGINE_NAMES)
        assert all(rate > 0 for rate in choice.images_per_s.values())
        faster = max(choice.images_per_s, key=lambda name: choice.images_per_s[name])
        assert choice.engine == faster == runtime.engine.name
        assert runtime.provider == (CPU_EP if faster == "onnxruntime" else "OpenVINO CPU (fp32)")
        assert choice.batch_size == 4 and 0 < (choice.trial_s or 0) < 10
        assert choice.describe()["images_per_s"].keys() == choice.images_per_s.keys()


def test_the_faster_figure_wins_and_a_tie_keeps_onnx_runtime() -> None:
    assert pick({"onnxruntime": 10.2, "openvino": 10.6}) == "openvino"
    assert pick({"onnxruntime": 14.1, "openvino": 9.0}) == "onnxruntime"
    assert pick({"onnxruntime": 5.0, "openvino": 5.0}) == "onnxruntime"


def test_which_engines_may_run_a_card(exported_model: Path) -> None:
    """Measured only where both run the card at its precision; a setting forces one."""
    card = ModelRuntime(exported_model / "model.onnx", "cpu", 2, engine="onnxruntime").card
    at = {p: card.model_copy(update={"precision": p}) for p in ("fp32", "int8", "fp16")}
    bf16 = card.model_copy(update={"precision": "bf16", "inference_precision": "bf16"})
    assert candidates(at["fp32"], "auto", "cpu") == (list(ENGINE_NAMES), "measured")
    assert candidates(at["int8"], "auto", "auto") == (list(ENGINE_NAMES), "measured")
    assert candidates(at["fp16"], "auto", "cpu")[0] == ["onnxruntime"]
    assert candidates(at["fp32"], "auto", "cuda")[0] == ["onnxruntime"]
    assert candidates(bf16, "auto", "cpu") == (["openvino"], "bf16 runs on OpenVINO only")
    assert candidates(bf16, "onnxruntime", "cpu") == (
        ["onnxruntime"],
        "XCEPTION_ENGINE=onnxruntime",
    )


def test_a_forced_engine_wins_over_the_measurement(exported_model: Path) -> None:
    for engine in ENGINE_NAMES:
        runtime = ModelRuntime(exported_model / "model.onnx", "cpu", 2, engine=engine)
        assert runtime.engine.name == engine and runtime.choice.how == "forced"
        assert runtime.choice.images_per_s == {}  # nothing measured: no trial was run


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
    import artifact.engines.openvino_engine as engine

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
    """End to end where the CPU has bf16: the export's precision check, then the runtime.

    Random weights: top-1 agreement means nothing (probabilities all near 1/1000), so the
    export is told --min-agreement 0 and the features decide. The check must have compared
    bf16 arithmetic with fp32 — an export comparing the model with itself reports cosine 1.0
    exactly and names an fp32 engine."""
    from PIL import Image

    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i, pixels in enumerate(images(8)):
        Image.fromarray(pixels).save(calibration / f"{i}.png")
    out = tmp_path / "bf16" / "xception" / "1"
    subprocess.run(
        [sys.executable, "-m", "export", "--weights", "none", "--precision", "bf16",
         "--calibration", str(calibration), "--out", str(out), "--min-agreement", "0",
         "--min-cosine", "0.99"],
        check=True, timeout=600,
    )  # fmt: skip
    runtime = ModelRuntime(out / "model.onnx", "cpu", 2)
    assert runtime.provider == "OpenVINO CPU (bf16)" and runtime.card.precision == "bf16"
    assert runtime.choice.how == "only"
    check = runtime.card.precision_check
    assert check is not None and check["verified_on"] == "OpenVINO CPU (bf16)"
    assert check["images"] == 8 and 0.99 < check["cosine_mean"] < 1.0 - 1e-6
    reference = ModelRuntime(out / "model.onnx", "cpu", 2, engine="onnxruntime")
    assert reference.provider == CPU_EP
    batch = images()
    features, expected = runtime.run(batch)[1], reference.run(batch)[1]
    assert cosines(expected, features).min() > 0.99
    # bf16 really ran: further from fp32 than another fp32 engine ever is.
    assert FP32_TOLERANCE < relative_error(features, expected) < 0.05
