"""What the routes declare: the settings, the version serving the request, its uploads, the caller.

The gate (:mod:`service.edge.gate`) routed, authenticated and admitted the request before any
of this runs, from the route Starlette matches and the same query; the ``?model=``/
``?version=`` and ``{name}`` parameters FastAPI parses here pick the version that serves it
(:meth:`Passage.reroute`: the one admitted, unless they name another).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from service.config import Settings
from service.core.admission import Ticket
from service.core.inference import ClientGone, InferenceService, Upload
from service.edge.gate import Passage, passage_of
from service.protocols.uploads import read_uploads
from service.repository.repository import ModelRepository


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_repository(request: Request) -> ModelRepository:
    repository: ModelRepository = request.app.state.repository
    return repository


def get_passage(request: Request) -> Passage:
    passage = passage_of(request.scope)
    assert passage is not None, "every HTTP request passes the gate"
    return passage


@dataclass(frozen=True)
class Caller:
    """What inference needs from the HTTP request: a way to learn that its client has gone,
    and its passage (the admission ticket, released once its images are queued)."""

    gone: ClientGone
    passage: Passage

    @property
    def ticket(self) -> Ticket:
        assert self.passage.ticket is not None, "an inference route the gate admitted"
        return self.passage.ticket


def get_caller(request: Request, passage: Annotated[Passage, Depends(get_passage)]) -> Caller:
    async def gone() -> None:
        # After the body was read, receive() waits for the disconnect message.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return Caller(gone=gone, passage=passage)


def served_by_query(
    passage: Annotated[Passage, Depends(get_passage)],
    model: Annotated[
        str | None,
        Query(description="model name (default: XCEPTION_DEFAULT_MODEL or the only one)"),
    ] = None,
    version: Annotated[
        str | None, Query(description="model version (default: the newest ready)")
    ] = None,
) -> InferenceService:
    """``?model=&version=``: the version serving this request (the one the gate admitted it
    to from the same query; were they ever to differ, FastAPI's reading wins)."""
    return passage.reroute(model, version)


def served_by_path(
    request: Request,
    passage: Annotated[Passage, Depends(get_passage)],
    name: Annotated[str, Path(description="model name")],
) -> InferenceService:
    """``/v2/models/{name}[/versions/{version}]``: the version serving this request."""
    return passage.reroute(name, request.path_params.get("version"))


def model_version(version: Annotated[str, Path(description="model version")]) -> str:
    """``{version}`` of the versioned model paths (read with the name by served_by_path)."""
    return version


async def get_uploads(
    request: Request,
    filename: Annotated[
        str | None, Query(description="the image's name, for a raw image body")
    ] = None,
) -> list[Upload]:
    """The request's images: multipart parts, a raw image body, or JSON base64 (see
    service.protocols.uploads); the body size limit was enforced while they arrived."""
    return await read_uploads(request, filename)


SettingsDep = Annotated[Settings, Depends(get_settings)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
QueryServedDep = Annotated[InferenceService, Depends(served_by_query)]
PathServedDep = Annotated[InferenceService, Depends(served_by_path)]
UploadsDep = Annotated[list[Upload], Depends(get_uploads)]
CallerDep = Annotated[Caller, Depends(get_caller)]
VersionDep = Depends(model_version)
