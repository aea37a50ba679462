"""Dependencies the routes declare: the inference service, uploads, the API key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, File, Request, UploadFile

from service.config import Settings
from service.errors import Unauthorized
from service.inference import InferenceService, Upload


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


def require_api_key(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """With XCEPTION_API_KEY set, require ``Authorization: Bearer <key>``."""
    if settings.api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = settings.api_key.get_secret_value()
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), expected):
        raise Unauthorized("missing or wrong API key: send 'Authorization: Bearer <key>'")


async def read_uploads(
    file: Annotated[list[UploadFile], File(description="one or more images")],
) -> list[Upload]:
    """The ``file`` parts' bytes (the body size limit was enforced before parsing)."""
    return [Upload(filename=f.filename or "", data=await f.read()) for f in file]


ServiceDep = Annotated[InferenceService, Depends(get_service)]
UploadsDep = Annotated[list[Upload], Depends(read_uploads)]
