"""Dependencies the routes declare: the settings, the inference service, uploads, the caller.

The API key is checked before any of this, from the headers (service.guards.ApiKeyGuard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from service.admission import Ticket
from service.config import Settings
from service.guards import ADMISSION_STATE_KEY
from service.inference import ClientGone, InferenceService
from service.protocols.uploads import Upload, read_uploads


@dataclass(frozen=True)
class Caller:
    """What inference needs from the HTTP request: a way to learn that its client has gone,
    and the admission ticket the gate gave it (released once its images are queued)."""

    gone: ClientGone
    ticket: Ticket | None


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


def get_caller(request: Request) -> Caller:
    async def gone() -> None:
        # After the body was read, receive() waits for the disconnect message.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    ticket = request.scope.get("state", {}).get(ADMISSION_STATE_KEY)
    return Caller(gone=gone, ticket=ticket)


async def get_uploads(
    request: Request,
    filename: Annotated[
        str | None, Query(description="the image's name, for a raw image body")
    ] = None,
) -> list[Upload]:
    """The request's images: multipart parts, a raw image body, or JSON base64 (see
    service.protocols.uploads); the body size limit was enforced while they arrived."""
    return await read_uploads(request, filename)


ServiceDep = Annotated[InferenceService, Depends(get_service)]
UploadsDep = Annotated[list[Upload], Depends(get_uploads)]
CallerDep = Annotated[Caller, Depends(get_caller)]
