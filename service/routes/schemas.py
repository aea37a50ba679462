"""Response bodies (the HTTP API contract in docs/reference.md), as pydantic models for /docs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ModelRef(BaseModel):
    name: str
    version: str


class Prediction(BaseModel):
    label: str
    index: int
    score: float


class ClassifyResult(BaseModel):
    filename: str
    predictions: list[Prediction]


class ClassifyResponse(BaseModel):
    model: ModelRef
    results: list[ClassifyResult]


class FeaturesResult(BaseModel):
    filename: str
    features: list[float]


class FeaturesResponse(BaseModel):
    model: ModelRef
    dim: int
    results: list[FeaturesResult]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Status(BaseModel):
    status: str
    detail: str | None = None


class ModelsResponse(BaseModel):
    """Every model version with its state; ``card``/``runtime``: the default model's."""

    default_model: str | None
    version_policy: str
    ready: bool
    models: list[dict[str, Any]]
    card: dict[str, Any] | None
    runtime: dict[str, Any] | None


# /classify and /features accept three kinds of body (service.protocols.uploads); FastAPI
# cannot infer that from a dependency that reads the request itself: the OpenAPI says it here.
IMAGES_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["file"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "data": {"type": "string", "description": "base64 or data URI"},
                                    "filename": {"type": "string"},
                                },
                                "required": ["data"],
                            },
                        }
                    },
                    "required": ["images"],
                }
            },
        },
    }
}
