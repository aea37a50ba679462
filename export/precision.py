"""Reduced-precision variants of the exported fp32 model, verified against it on real images.

- ``int8``: ONNX Runtime static quantization — its pre-processing (shape inference +
  graph optimisation) first, then QDQ with per-channel int8 weights and uint8 activations
  on Conv/Gemm/MatMul, calibrated on real images. For the CPU execution provider.
- ``fp16``: weights and activations in float16 for the CUDA execution provider; the
  uint8 ``image`` input and the float32 outputs stay as they are at the graph boundary.
- ``bf16``: the fp32 file itself, run by OpenVINO at bf16 inference precision on CPUs with
  AVX512_BF16 or AMX (ONNX Runtime's CPU provider has no bf16): only the card changes.

All three are compared with the fp32 file on the same images: top-1 agreement and the cosine
similarity of the feature vectors. The export fails below the thresholds.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from artifact.batches import pixel_batches
from artifact.card import INPUT_NAME, ModelCard, Precision
from artifact.images import list_images
from artifact.preprocess import Preprocessor
from artifact.runtime import ModelRuntime
from export.errors import ExportError

CALIBRATION_BATCH = 8


def calibration_images(folder: Path, card: ModelCard, limit: int) -> np.ndarray:
    """Up to ``limit`` images under ``folder``, evenly spread over the sorted list, preprocessed."""
    if not folder.is_dir():
        raise ExportError(f"--calibration {str(folder)!r}: no such folder")
    paths = list_images(folder)
    if len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).astype(int)]
    preprocess = Preprocessor.for_local_files(card)
    # Unreadable files are skipped: they do not calibrate anything.
    arrays = [
        pixels
        for batch in pixel_batches(paths, preprocess, CALIBRATION_BATCH)
        for pixels in batch.pixels
    ]
    if len(arrays) < 8:
        raise ExportError(
            f"--calibration {str(folder)!r}: {len(arrays)} readable images; need at least 8 real "
            "images like the ones the model will serve"
        )
    return np.stack(arrays)


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over an in-memory uint8 array."""

    def __init__(self, images: np.ndarray) -> None:
        self._batches = iter(
            [images[i : i + CALIBRATION_BATCH] for i in range(0, len(images), CALIBRATION_BATCH)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_int8(fp32: Path, out: Path, images: np.ndarray) -> None:
    """Static QDQ quantization (per-channel weights), after ORT's quantization pre-processing."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(out),
            _Batches(images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
        )


def convert_fp16(fp32: Path, out: Path) -> None:
    """float16 everywhere inside; uint8 in and float32 out at the boundary."""
    from onnxconverter_common import float16

    model = onnx.load(str(fp32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "truncated to 1e-07": tiny epsilons, expected
        # Cast stays as exported (uint8 → float32); the converter adds the float16 cast after it.
        converted = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, "Cast"]
        )
    onnx.save(converted, str(out))


def compare(
    fp32: Path, variant: Path, images: np.ndarray, card: ModelCard, variant_card: ModelCard
) -> dict[str, Any]:
    """Top-1 agreement and feature cosine similarity of ``variant`` vs ``fp32`` on ``images``
    (the reference on the CPU with ONNX Runtime; the variant where and how it will be served:
    the GPU when present, the engine its card names)."""
    reference = ModelRuntime(fp32, "cpu", card=card, engine="onnxruntime")
    candidate = ModelRuntime(variant, "auto", card=variant_card)
    agree, cosines = [], []
    for start in range(0, len(images), CALIBRATION_BATCH):
        batch = images[start : start + CALIBRATION_BATCH]
        p32, f32 = reference.run(batch)
        pv, fv = candidate.run(batch)
        agree.append(p32.argmax(axis=1) == pv.argmax(axis=1))
        norms = np.linalg.norm(f32, axis=1) * np.linalg.norm(fv, axis=1)
        cosines.append((f32 * fv).sum(axis=1) / np.where(norms > 0, norms, 1.0))
    cosine = np.concatenate(cosines)
    return {
        "images": len(images),
        "top1_agreement": float(np.concatenate(agree).mean()),
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
        "verified_on": candidate.provider,
    }


def variant_card(card: ModelCard, precision: Precision) -> ModelCard:
    """The card of ``card``'s model at ``precision``: bf16 also names its engine."""
    update: dict[str, Any] = {"precision": precision}
    if precision == "bf16":
        update.update(engine="openvino", inference_precision="bf16")
    return card.model_copy(update=update)


def check_bf16_possible() -> None:
    """Refuse a bf16 export in one line where it cannot run (before minutes of work)."""
    from artifact.engines.openvino_engine import ALTERNATIVES, cpu_bf16, openvino_module
    from artifact.errors import ModelLoadError

    try:
        openvino_module()
    except ModelLoadError as exc:
        raise ExportError(f"--precision bf16 runs on OpenVINO: {exc}") from exc
    has_bf16, reason = cpu_bf16()
    if not has_bf16:
        raise ExportError(f"--precision bf16: {reason}; {ALTERNATIVES}")


def make_variant(
    precision: Literal["int8", "fp16", "bf16"],
    fp32: Path,
    card: ModelCard,
    images: np.ndarray,
    min_top1_agreement: float,
    min_cosine: float,
) -> dict[str, Any]:
    """Replace ``fp32`` in place by its ``precision`` variant once it passes the checks
    (bf16: the same file, checked as OpenVINO runs it at bf16)."""
    variant = fp32 if precision == "bf16" else fp32.with_name(f"{precision}.onnx")
    if precision == "int8":
        quantize_int8(fp32, variant, images)
    elif precision == "fp16":
        convert_fp16(fp32, variant)
    check = compare(fp32, variant, images, card, variant_card(card, precision))
    check.update(min_top1_agreement=min_top1_agreement, min_cosine=min_cosine)
    if check["top1_agreement"] < min_top1_agreement or check["cosine_mean"] < min_cosine:
        if variant != fp32:
            variant.unlink()
        raise ExportError(
            f"--precision {precision}: top-1 agreement with fp32 {check['top1_agreement']:.3f} "
            f"(need {min_top1_agreement}), feature cosine mean {check['cosine_mean']:.4f} "
            f"(need {min_cosine}) on {check['images']} calibration images; use more/better "
            "--calibration images or relax --min-agreement/--min-cosine"
        )
    if variant != fp32:
        variant.replace(fp32)
    return check
