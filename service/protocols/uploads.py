"""The images of a ``/classify`` or ``/features`` request, whichever way they were sent.

- ``multipart/form-data``: one or more parts named ``file`` (the original API);
- a raw body, ``Content-Type: image/*`` or ``application/octet-stream``: one image, named by
  the ``filename`` query parameter (default ``upload``);
- ``application/json``: ``{"images": [{"data": "<base64 or data URI>", "filename": "…"}]}``.

Every way goes through the same limits afterwards (body size before, files and pixels after).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service import errors
from service.core.inference import Upload
from service.core.limits import Admission
from service.errors import ServiceError
from service.protocols.image_sources import SourceError, decode_base64

HOW_TO_SEND = (
    "send multipart/form-data parts named 'file', one raw image (Content-Type: image/*), "
    'or JSON {"images": [{"data": "<base64>", "filename": "…"}]}'
)


# Marks a JSON-schema array of images: the OpenAPI document turns it into maxItems =
# XCEPTION_MAX_FILES (service.routes.schemas.declared).
IMAGES_MARK = "x-images"


def count_images_first(value: Any, info: ValidationInfo) -> Any:
    """A pydantic ``before`` validator for a list of images, validated with
    ``context={"admission": Admission}``: its length is checked before each element is
    (250,000 bad elements built 250,000 errors, 3 s and +333 MB, before a limit applied).
    The 413 is a ServiceError, not a ValueError: pydantic lets it through unchanged."""
    admission: Admission = (info.context or {})["admission"]
    if isinstance(value, list):
        admission.check_files(len(value))
    return value


class JsonImage(BaseModel):
    data: str = Field(description="base64 of the image file, or a data:image/…;base64, URI")
    filename: str | None = None


class JsonImages(BaseModel):
    """Validated with ``context={"admission": Admission}``: the count comes first."""

    images: list[JsonImage] = Field(min_length=1)
    _count_first = field_validator("images", mode="before")(count_images_first)


async def read_uploads(
    request: Request, filename: str | None, admission: Admission
) -> list[Upload]:
    """The request's images, in order; a 4xx naming the problem when there are none (or,
    for JSON, more than ``admission`` takes: before each is validated)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        form = await request.form()
        try:
            parts = [v for k, v in form.multi_items() if k == "file" and isinstance(v, UploadFile)]
            if not parts:
                raise ServiceError(
                    errors.INVALID_PARAMETER,
                    f"file: no part named 'file' in the form; {HOW_TO_SEND}",
                )
            return [Upload(part.filename or "", await part.read()) for part in parts]
        finally:
            await form.close()  # the parts' spooled temporary files, now rather than at GC
    if media.startswith("image/") or media == "application/octet-stream":
        return [Upload(filename or "upload", await request.body())]
    if media == "application/json":
        return _json_images(await request.body(), admission)
    if not media:
        raise ServiceError(
            errors.INVALID_PARAMETER, f"no Content-Type and no images; {HOW_TO_SEND}"
        )
    raise ServiceError(
        errors.UNSUPPORTED_MEDIA_TYPE,
        f"Content-Type {media!r} is not accepted here; {HOW_TO_SEND}",
    )


def _json_images(body: bytes, admission: Admission) -> list[Upload]:
    try:
        parsed = JsonImages.model_validate_json(body, context={"admission": admission})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ServiceError(
            errors.INVALID_PARAMETER, f"JSON body, {where}: {first['msg']}; {HOW_TO_SEND}"
        ) from exc
    uploads = []
    for index, item in enumerate(parsed.images):
        name = item.filename or f"images[{index}]"
        try:
            uploads.append(Upload(name, decode_base64(item.data, f"images[{index}] ({name})")))
        except SourceError as exc:
            raise source_error(exc) from exc
    return uploads


def source_error(exc: SourceError) -> ServiceError:
    """The HTTP answer for an unusable image reference."""
    return ServiceError(exc.error, str(exc))
