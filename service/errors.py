"""The error envelope: every failure is ``{"error": {"code", "message"}}`` with its status.

Services raise :class:`ServiceError` subclasses, and image decoding raises the artifact
layer's plain :class:`~artifact.errors.ImageError` (mapped by :data:`IMAGE_ERRORS`); the
handlers registered by :func:`install_error_handlers` turn them, FastAPI's validation
errors and any unexpected exception into the envelope, so no client ever sees a bare 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from artifact.errors import (
    EmptyImage,
    ImageError,
    ImageTooLarge,
    NotAnImage,
    UndecodableImage,
    UnsupportedAspectRatio,
)

logger = logging.getLogger("service.errors")

V2_PREFIX = "/v2"
# A 422 names each bad parameter with an excerpt of what was sent, never the whole value.
MAX_VALIDATION_PROBLEMS = 5
MAX_EXCERPT_CHARS = 80


# The artifact layer's image errors as HTTP answers (status, code).
IMAGE_ERRORS: dict[type[ImageError], tuple[int, str]] = {
    EmptyImage: (400, "empty_file"),
    UndecodableImage: (400, "invalid_image"),
    ImageTooLarge: (413, "image_too_large"),
    NotAnImage: (415, "unsupported_media_type"),
    # Valid, but resizing it would cost far more than its size suggests.
    UnsupportedAspectRatio: (422, "unsupported_aspect_ratio"),
}


class ServiceError(Exception):
    """A failure with an HTTP status, a snake_case code and a message that says what to do."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class UploadTooLarge(ServiceError):
    status_code, code = 413, "upload_too_large"


class TooManyFiles(ServiceError):
    status_code, code = 413, "too_many_files"


class BadImageReference(ServiceError):
    # Malformed base64, a data URI without ;base64, a URL the server will not fetch.
    status_code, code = 400, "invalid_image_reference"


class UnsupportedContentType(ServiceError):
    status_code, code = 415, "unsupported_media_type"


class ModelNotFound(ServiceError):
    status_code, code = 404, "model_not_found"


class ModelLoadFailed(ServiceError):
    # POST /v2/repository/models/{name}/load: no version of the model could be loaded.
    status_code, code = 400, "model_load_failed"


class InvalidTensor(ServiceError):
    # A v2 infer request whose tensors, shapes or datatypes do not fit the model.
    status_code, code = 400, "invalid_tensor"


class InvalidParameter(ServiceError):
    status_code, code = 422, "invalid_parameter"


class Unauthorized(ServiceError):
    status_code, code = 401, "unauthorized"


class Overloaded(ServiceError):
    status_code, code = 503, "overloaded"


class NotReady(ServiceError):
    status_code, code = 503, "not_ready"


class ShuttingDown(ServiceError):
    status_code, code = 503, "shutting_down"


class RequestTimeout(ServiceError):
    status_code, code = 504, "timeout"


class ClientClosedRequest(ServiceError):
    # nginx's convention: logged and counted, though nobody is left to read it.
    status_code, code = 499, "client_closed_request"


class InferenceFailed(ServiceError):
    status_code, code = 500, "inference_failed"


def error_response(
    status_code: int,
    code: str,
    message: str,
    retry_after_s: int | None = None,
    *,
    close: bool = False,
    path: str = "",
) -> JSONResponse:
    """The envelope as a response; 503s carry ``Retry-After``.

    ``path``: the request's; under ``/v2`` the body is the Open Inference Protocol's
    ``{"error": "message"}`` (what tritonclient reads). ``close``: answer
    ``Connection: close`` — for refusals sent before the body was read, so the server closes
    the connection instead of reading the rest of the upload.
    """
    headers = {}
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    if status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if close:
        headers["Connection"] = "close"
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if path.startswith(V2_PREFIX):
        body = {"error": message}  # the Open Inference Protocol's error body
    return JSONResponse(body, status_code=status_code, headers=headers)


def envelope_bytes(code: str, message: str) -> bytes:
    """The envelope's JSON body, for answers written below the ASGI app (the HTTP protocol)."""
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(
        exc.status_code, exc.code, exc.message, exc.retry_after_s, path=request.url.path
    )


async def _image_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageError)
    status, code = IMAGE_ERRORS.get(type(exc), (400, "invalid_image"))
    return error_response(status, code, str(exc), path=request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    problems = [_describe(item) for item in errors[:MAX_VALIDATION_PROBLEMS]]
    if len(errors) > MAX_VALIDATION_PROBLEMS:
        problems.append(f"and {len(errors) - MAX_VALIDATION_PROBLEMS} more")
    return error_response(422, "invalid_parameter", "; ".join(problems), path=request.url.path)


def _describe(item: Any) -> str:
    """One validation problem, with at most a short excerpt of the value that caused it:
    the submitted value may be megabytes (a text field named ``file``), never echo it."""
    where = ".".join(str(part) for part in item["loc"] if part not in ("body", "query"))
    value = item.get("input")
    if value in (None, {}):
        return f"{where}: {item['msg']}"
    shown = repr(value)
    if len(shown) > MAX_EXCERPT_CHARS:
        shown = f"{shown[:MAX_EXCERPT_CHARS]}… ({len(shown):,} characters)"
    return f"{where}: {item['msg']} (got {shown})"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), path=request.url.path)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(
        500,
        "internal_error",
        "unexpected server error; it has been logged",
        path=request.url.path,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the envelope."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(ImageError, _image_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
