"""Every error code the service answers with, in one registry: code → status → meaning.

The registry feeds the error envelope (:mod:`service.edge.envelope`), the error table in
``docs/reference.md`` (``python -m service.errors`` prints it; ``tests/test_readme.py`` checks
the page against it) and the tests. Code anywhere in the service refuses a request by raising
the one type, :class:`ServiceError`, naming a registered code; nothing else carries a status.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from artifact.decode_cost import MAX_JPEG_SCANS


@dataclass(frozen=True)
class ErrorCode:
    """One kind of failure: its HTTP status, its snake_case code, when it is answered (the
    docs' table), and the ``Retry-After`` it carries when the client should simply retry."""

    status: int
    code: str
    meaning: str
    retry_after_s: int | None = None


INVALID_IMAGE = ErrorCode(
    400,
    "invalid_image",
    "the bytes claim an image format (magic bytes) but do not decode",
)
EMPTY_FILE = ErrorCode(400, "empty_file", "an empty `file` part")
HTTP_ERROR = ErrorCode(
    400,
    "http_error",
    "bytes that are not HTTP/1.1 (a control character in a header, broken framing), or a "
    "malformed multipart body (e.g. a part over the parser's 1 MB field limit)",
)
INVALID_IMAGE_REFERENCE = ErrorCode(
    400,
    "invalid_image_reference",
    "a JSON image or embeddings input that is not valid base64, a malformed data URI, or a "
    "URL the server does not fetch (`XCEPTION_URL_HOSTS`); names the index",
)
INVALID_TENSOR = ErrorCode(
    400,
    "invalid_tensor",
    "a v2 infer request whose JSON, tensors, shapes, datatypes or outputs do not fit the model",
)
MODEL_LOAD_FAILED = ErrorCode(
    400,
    "model_load_failed",
    "an explicit load of a model none of whose versions loads; each version's reason",
)
UNAUTHORIZED = ErrorCode(
    401,
    "unauthorized",
    "`XCEPTION_API_KEY` set and `Authorization: Bearer <key>` missing, malformed (any bytes) "
    "or wrong; for repository control, the same with `XCEPTION_ADMIN_KEY`; checked from the "
    "headers, constant-time",
)
MODEL_CONTROL_DISABLED = ErrorCode(
    403,
    "model_control_disabled",
    "a repository load or unload while `XCEPTION_MODEL_CONTROL` is `none` (the default); the "
    "message says how to turn control on",
)
NOT_FOUND = ErrorCode(404, "not_found", "unknown path")
MODEL_NOT_FOUND = ErrorCode(
    404,
    "model_not_found",
    "`?model=`/`?version=`, a v2 path or an embeddings `model` names a model or version that "
    "is not served; the message lists what is",
)
METHOD_NOT_ALLOWED = ErrorCode(405, "method_not_allowed", "wrong method")
REQUEST_TIMEOUT = ErrorCode(
    408,
    "request_timeout",
    "headers not received within `XCEPTION_HEADER_TIMEOUT_S`, or the body within "
    "`XCEPTION_BODY_TIMEOUT_S`; the connection is closed",
)
UPLOAD_TOO_LARGE = ErrorCode(
    413,
    "upload_too_large",
    "body over `XCEPTION_MAX_UPLOAD_MB` (from Content-Length, or while reading a chunked "
    "body), or a fetched image URL over it",
)
IMAGE_TOO_LARGE = ErrorCode(
    413,
    "image_too_large",
    "width × height over `XCEPTION_MAX_PIXELS`, read from the image header before decoding",
)
TOO_MANY_FILES = ErrorCode(
    413,
    "too_many_files",
    "more than `XCEPTION_MAX_FILES` images in one request",
)
UNSUPPORTED_MEDIA_TYPE = ErrorCode(
    415,
    "unsupported_media_type",
    "not an image format; a data URI of a non-image type; a request body type other than "
    "multipart, `image/*`, `application/octet-stream` or JSON",
)
INVALID_PARAMETER = ErrorCode(
    422,
    "invalid_parameter",
    "bad query or body parameter (at most 5 problems, each with at most 80 characters of the "
    "value sent), `top_k` above the model's class count on any protocol, no `file` part; no "
    "model named while several models are served and none is the default",
)
UNSUPPORTED_ASPECT_RATIO = ErrorCode(
    422,
    "unsupported_aspect_ratio",
    "longer side over `XCEPTION_MAX_ASPECT_RATIO` × the shorter",
)
IMAGE_TOO_COMPLEX = ErrorCode(
    422,
    "image_too_complex",
    f"a JPEG of more than {MAX_JPEG_SCANS} progressive scans, or a TIFF listing more strips "
    "or tiles than its size needs: read from the header, the decode would cost far more than "
    "its pixels",
)
HEADERS_TOO_LARGE = ErrorCode(
    431,
    "headers_too_large",
    "request line + headers over `XCEPTION_MAX_HEADER_KB`; the connection is closed",
)
CLIENT_CLOSED_REQUEST = ErrorCode(
    499,
    "client_closed_request",
    "the client left before its result (logged and counted only; nginx's convention)",
)
INFERENCE_FAILED = ErrorCode(
    500,
    "inference_failed",
    "the model raised for the batch this request was in (every request in it gets this answer)",
)
INTERNAL_ERROR = ErrorCode(500, "internal_error", "a bug (logged with its traceback)")
OVERLOADED = ErrorCode(
    503,
    "overloaded",
    "the images ahead would take longer than `XCEPTION_MAX_QUEUE_WAIT_S`, or "
    "`XCEPTION_MAX_QUEUE` images of this version are queued or arriving; decided before the "
    "body is read (and again with the request's image count before decoding); `Retry-After` ="
    " seconds until the work ahead drops under the bound, at the measured time per image",
)
NOT_READY = ErrorCode(
    503,
    "not_ready",
    "the model (version) asked for is loading or warming up",
    retry_after_s=5,
)
SHUTTING_DOWN = ErrorCode(
    503,
    "shutting_down",
    "draining after SIGTERM; uploads still arriving are cut off with it",
    retry_after_s=1,
)
TOO_MANY_CONNECTIONS = ErrorCode(
    503,
    "too_many_connections",
    "more than `XCEPTION_MAX_CONNECTIONS` open connections",
    retry_after_s=1,
)
IMAGE_FETCH_FAILED = ErrorCode(
    502,
    "image_fetch_failed",
    "an allowed image URL (`XCEPTION_URL_HOSTS`) could not be fetched: refused, not HTTP, an "
    "error status, a redirect (never followed), or not in full within `XCEPTION_URL_TIMEOUT_S`",
)
TIMEOUT = ErrorCode(
    504,
    "timeout",
    "no result within `XCEPTION_REQUEST_TIMEOUT_S` (or the request's own, shorter, v2 "
    "`parameters.timeout`), decoding included: a decode still running then stops",
)

REGISTRY: tuple[ErrorCode, ...] = tuple(
    sorted(
        (value for value in list(globals().values()) if isinstance(value, ErrorCode)),
        key=lambda error: (error.status, error.code),
    )
)
BY_CODE = {error.code: error for error in REGISTRY}
assert len(BY_CODE) == len(REGISTRY), "two registry entries share a code"


class ServiceError(Exception):
    """A request refused or failed: a registered :class:`ErrorCode`, a message that names what
    was wrong and what to do, and ``Retry-After`` (the code's own unless given)."""

    def __init__(self, error: ErrorCode, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.retry_after_s = error.retry_after_s if retry_after_s is None else retry_after_s
        self.status_code, self.code = error.status, error.code


def markdown_table() -> str:
    """The registry as the Markdown table ``docs/reference.md`` shows."""
    lines = ["| status | code | when |", "|---|---|---|"]
    for error in REGISTRY:
        retry = f" (`Retry-After: {error.retry_after_s}`)" if error.retry_after_s else ""
        lines.append(f"| {error.status} | `{error.code}` | {error.meaning}{retry} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m service.errors: the table for docs/reference.md
    sys.stdout.write(markdown_table() + "\n")
