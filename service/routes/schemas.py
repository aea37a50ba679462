"""Response bodies (the HTTP API contract in docs/reference.md), as pydantic models for /docs."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from artifact.images import media_types
from service.core.limits import InferenceLimits
from service.errors import REGISTRY
from service.protocols.openai import EmbeddingsRequest
from service.protocols.uploads import IMAGES_MARK


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


class V2ErrorResponse(BaseModel):
    """The Open Inference Protocol's error body (every path under ``/v2``)."""

    error: str


# What any request can meet before or around its route (service.edge): a missing key, the
# headers or body too slow or too large, a server error, the connection limit or the drain.
EDGE_STATUSES = (401, 408, 413, 431, 500, 503)


def answers(*statuses: int, v2: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses an operation can answer (besides the
    edge's), each with its body model and the registry's codes for that status."""
    model = V2ErrorResponse if v2 else ErrorResponse
    return {
        status: {
            "model": model,
            "description": ", ".join(e.code for e in REGISTRY if e.status == status),
        }
        for status in sorted({*statuses, *EDGE_STATUSES})
    }


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


def declare_limits(app: FastAPI, limits: InferenceLimits) -> None:
    """``app``'s OpenAPI document (generated once, on first request) with the server's
    limits declared in it: :func:`declared`."""
    generate = app.openapi
    max_files = limits.admission.max_files
    types = media_types(limits.images.image_formats)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declared(generate(), max_files, types)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def declared(openapi: dict[str, Any], max_files: int, types: list[str]) -> dict[str, Any]:
    """The OpenAPI document as strict as the server, so that a client or fuzzer does not
    call valid what is refused: ``maxItems: XCEPTION_MAX_FILES`` on every array of images
    (a longer list is refused 413 before its elements are read), and the media types of
    ``XCEPTION_IMAGE_FORMATS`` as each multipart image part's ``contentType`` (another
    format is 415). A copy: the routes' schema fragments are shared module constants."""
    openapi = copy.deepcopy(openapi)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.pop(IMAGES_MARK, False):
                node["maxItems"] = max_files
            if node.pop(IMAGE_TYPES_MARK, False):
                node["contentType"] = ", ".join(types)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(openapi)
    return openapi


# Marks a multipart part's encoding: declared() writes XCEPTION_IMAGE_FORMATS' media types.
IMAGE_TYPES_MARK = "x-image-types"

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
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            IMAGES_MARK: True,
                        }
                    },
                    "required": ["file"],
                },
                "encoding": {"file": {IMAGE_TYPES_MARK: True}},
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {
                            "type": "array",
                            "minItems": 1,
                            IMAGES_MARK: True,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "data": {
                                        "type": "string",
                                        "contentEncoding": "base64",
                                        "description": "base64 or data URI",
                                    },
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


class V2Tensor(BaseModel):
    """One input tensor: ``data`` in JSON, or ``parameters.binary_data_size`` bytes of the
    binary section that follows the JSON header (``Inference-Header-Content-Length``)."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class V2RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None  # binary_data, classification


class V2InferRequest(BaseModel):
    """``POST /v2/models/{name}[/versions/{version}]/infer`` (service.protocols.v2)."""

    id: str | None = None
    inputs: list[V2Tensor] = Field(min_length=1)  # none is 400: nothing to infer
    outputs: list[V2RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None  # binary_data_output, timeout (µs)


def inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` written in place (a schema embedded in one
    operation cannot point at ``#/$defs``)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return dict(resolve(schema))


# The route reads the body itself (JSON, or JSON + binary tensors): the schema says so here.
INFER_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inlined(V2InferRequest.model_json_schema())},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "the JSON header, then the binary tensor data",
            },
        },
    }
}


# /v1/embeddings reads its body itself (its inputs counted first): the schema says so here.
EMBEDDINGS_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inlined(EmbeddingsRequest.model_json_schema())}},
    }
}
