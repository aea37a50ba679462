"""How every failure is answered: ``{"error": {"code", "message"}}`` with its registered status.

Code raises :class:`~service.errors.ServiceError`; image decoding raises the artifact layer's
plain :class:`~artifact.errors.ImageError` (mapped by :data:`IMAGE_ERRORS`). The handlers
that :func:`install_error_handlers` registers turn those, FastAPI's validation errors and any
unexpected exception into the envelope, so no client ever sees a bare 500. Under ``/v2`` the
body is the Open Inference Protocol's ``{"error": "message"}`` (what tritonclient reads).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from artifact.errors import (
    EmptyImage,
    ImageError,
    ImageTooComplex,
    ImageTooLarge,
    NotAnImage,
    UndecodableImage,
    UnsupportedAspectRatio,
)
from service import errors
from service.errors import ErrorCode, ServiceError

logger = logging.getLogger(__name__)

V2_PREFIX = "/v2"
# A 422 names each bad parameter with an excerpt of what was sent, never the whole value.
MAX_VALIDATION_PROBLEMS = 5
MAX_EXCERPT_CHARS = 80

# The artifact layer's image errors as registered codes.
IMAGE_ERRORS: dict[type[ImageError], ErrorCode] = {
    EmptyImage: errors.EMPTY_FILE,
    UndecodableImage: errors.INVALID_IMAGE,
    ImageTooLarge: errors.IMAGE_TOO_LARGE,
    NotAnImage: errors.UNSUPPORTED_MEDIA_TYPE,
    # Valid, but resizing it would cost far more than its size suggests.
    UnsupportedAspectRatio: errors.UNSUPPORTED_ASPECT_RATIO,
    ImageTooComplex: errors.IMAGE_TOO_COMPLEX,
}
# Starlette's own HTTP errors (routing) by status.
HTTP_ERRORS = {404: errors.NOT_FOUND, 405: errors.METHOD_NOT_ALLOWED}


def error_response(
    error: ServiceError, *, close: bool = False, path: str = "", status: int | None = None
) -> JSONResponse:
    """``error`` as a response; ``Retry-After`` when it carries one, ``WWW-Authenticate`` for
    a 401. ``path``: the request's (it picks the v2 body under ``/v2``). ``close``: answer
    ``Connection: close`` — for refusals sent before the body was read, so the server closes
    the connection instead of reading the rest of the upload. ``status``: only for Starlette's
    HTTP errors of other statuses (``http_error``)."""
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if error.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if close:
        headers["Connection"] = "close"
    body: dict[str, Any] = {"error": {"code": error.code, "message": error.message}}
    if path.startswith(V2_PREFIX):
        body = {"error": error.message}
    return JSONResponse(body, status_code=status or error.status_code, headers=headers)


def envelope_bytes(error: ErrorCode, message: str) -> bytes:
    """The envelope's JSON body, for answers written below the ASGI app (the HTTP protocol)."""
    return json.dumps({"error": {"code": error.code, "message": message}}).encode()


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.error is errors.CLIENT_CLOSED_REQUEST:
        # Nobody reads this answer (nor uvicorn's access log, which skips a gone client):
        # the log line and the metrics' 499 are all that is left of the request.
        logger.info("%s %s: 499 %s", request.method, request.url.path, exc.message)
    return error_response(exc, path=request.url.path)


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    """The client left while its body was being read: a 499, like one that leaves while its
    images are being run, not a bug."""
    gone = ServiceError(errors.CLIENT_CLOSED_REQUEST, "the client disconnected mid-upload")
    return await _service_error(request, gone)


async def _image_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageError)
    error = IMAGE_ERRORS.get(type(exc), errors.INVALID_IMAGE)
    return error_response(ServiceError(error, str(exc)), path=request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    problems = [_describe(item) for item in found[:MAX_VALIDATION_PROBLEMS]]
    if len(found) > MAX_VALIDATION_PROBLEMS:
        problems.append(f"and {len(found) - MAX_VALIDATION_PROBLEMS} more")
    refusal = ServiceError(errors.INVALID_PARAMETER, "; ".join(problems))
    return error_response(refusal, path=request.url.path)


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
    error = HTTP_ERRORS.get(exc.status_code, errors.HTTP_ERROR)
    response = error_response(
        ServiceError(error, str(exc.detail)), path=request.url.path, status=exc.status_code
    )
    if exc.headers:  # e.g. the Allow header of a 405
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    refusal = ServiceError(errors.INTERNAL_ERROR, "unexpected server error; it has been logged")
    return error_response(refusal, path=request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the envelope."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(ImageError, _image_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected_error)
