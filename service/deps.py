"""Dependencies the routes declare: the settings, the inference service, uploads.

The API key is checked before any of this, from the headers (service.guards.ApiKeyGuard).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, File, Request, UploadFile

from service.config import Settings
from service.inference import InferenceService, Upload


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


async def read_uploads(
    file: Annotated[list[UploadFile], File(description="one or more images")],
) -> list[Upload]:
    """The ``file`` parts' bytes (the body size limit was enforced before parsing)."""
    return [Upload(filename=f.filename or "", data=await f.read()) for f in file]


ServiceDep = Annotated[InferenceService, Depends(get_service)]
UploadsDep = Annotated[list[Upload], Depends(read_uploads)]
