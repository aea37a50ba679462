"""The model card: the self-description every exported model carries.

One schema for both stages: the export stage builds a :class:`ModelCard` and
writes it into the ONNX ``metadata_props`` (key ``model_card``) and, with the
two fields only knowable once the file exists (``onnx_sha256``, ``verification``),
into ``model.json`` beside it. The service parses it back with the same class,
so a card the exporter can write is a card the service can read.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

METADATA_CARD_KEY = "model_card"
METADATA_LABELS_KEY = "labels"
INPUT_NAME = "image"
OUTPUT_NAMES = ("probabilities", "features")
Precision = Literal["fp32", "fp16", "int8", "bf16"]
Engine = Literal["onnxruntime", "openvino"]


class ResizePolicy(BaseModel):
    """How an image becomes the model's H×W: timm's eval transform, written down."""

    model_config = ConfigDict(extra="allow")

    # timm's crop modes: ``crop`` (timm's "center"), ``squash`` and ``border``.
    mode: Literal["crop", "squash", "border"]
    crop_pct: float = Field(1.0, gt=0.0, le=1.0)
    interpolation: str = "bicubic"

    def scale_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """Size before the centre crop (or pad), as timm's ``transforms_imagenet_eval``
        computes it for every mode: floor(size / crop_pct) per edge (timm floors; for the
        default Xception that is 333 for 299)."""
        h, w = input_size
        return math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)


class ModelCard(BaseModel):
    """Fields documented in docs/reference.md ("The model artifact"); extra fields are kept."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    arch: str
    weights: str
    input_size: tuple[int, int]
    resize: ResizePolicy
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int = Field(gt=0)
    num_features: int = Field(gt=0)
    labels: list[str]
    precision: Precision = "fp32"
    # Which engine runs the file, at which inference precision: bf16 cards carry the fp32
    # graph and ask OpenVINO to run it in bf16 (ONNX Runtime's CPU provider has no bf16).
    engine: Engine = "onnxruntime"
    inference_precision: Literal["fp32", "bf16"] = "fp32"
    metrics: dict[str, Any] | None = None
    # fp16/int8/bf16 only: agreement with the fp32 model it was made from, on real images.
    precision_check: dict[str, Any] | None = None
    num_params: int | None = None
    opset: int | None = None
    created_at: str
    versions: dict[str, str] = Field(default_factory=dict)
    # Only in model.json: they describe the written file, so they cannot be inside it.
    onnx_sha256: str | None = None
    verification: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _labels_match_classes(self) -> ModelCard:
        if len(self.labels) != self.num_classes:
            raise ValueError(
                f"labels has {len(self.labels)} entries but num_classes is {self.num_classes}"
            )
        return self

    def embedded(self) -> dict[str, Any]:
        """The card as stored inside the ONNX file (no file hash, no verification figures)."""
        return self.model_dump(mode="json", exclude={"onnx_sha256", "verification"})
