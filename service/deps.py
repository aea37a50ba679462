"""Dependencies the routes declare: the settings, the model a request routes to, uploads,
the caller.

The API key and admission are checked before any of this, from the headers
(service.guards); a request the gate admitted is served by the version it admitted it to.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from service.admission import Admission, Ticket
from service.config import Settings
from service.guards import ADMISSION_STATE_KEY
from service.inference import ClientGone, InferenceService
from service.protocols.uploads import Upload, read_uploads
from service.repository.repository import ModelRepository


@dataclass(frozen=True)
class Caller:
    """What inference needs from the HTTP request: a way to learn that its client has gone,
    and its admission ticket (released once its images are queued)."""

    gone: ClientGone
    request: Request

    @property
    def ticket(self) -> Ticket | None:
        """Read when inference starts: routing may admit a request after the gate did not."""
        admission = _admission(self.request)
        return admission.ticket if admission is not None else None


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_repository(request: Request) -> ModelRepository:
    repository: ModelRepository = request.app.state.repository
    return repository


def _admission(request: Request) -> Admission | None:
    admission: Admission | None = request.scope.get("state", {}).get(ADMISSION_STATE_KEY)
    return admission


@contextmanager
def routed(
    request: Request, name: str | None, version: str | None, *, admit: bool
) -> Iterator[InferenceService]:
    """The service of the version ``name``/``version`` routes to, held until the request is
    answered. The one the gate admitted the request to, when it matches; otherwise resolved
    now and, for inference (``admit``), admitted now (its model was only known from the body)."""
    admission = _admission(request)
    if admission is not None and admission.service is not None and admission.version is not None:
        admitted = admission.version
        if name in (None, admitted.name) and version in (None, admitted.version):
            yield admission.service
            return
    with get_repository(request).resolve(name, version).lease() as service:
        if not admit:
            yield service
            return
        ticket = service.admit_now()
        request.scope.setdefault("state", {})[ADMISSION_STATE_KEY] = Admission(
            ticket=ticket, service=service
        )
        try:
            yield service
        finally:
            ticket.release()


def query_routed_service(
    request: Request,
    model: Annotated[
        str | None,
        Query(description="model name (default: XCEPTION_DEFAULT_MODEL or the only one)"),
    ] = None,
    version: Annotated[
        str | None, Query(description="model version (default: the newest ready)")
    ] = None,
) -> Iterator[InferenceService]:
    """``?model=&version=``: the version serving this inference request."""
    with routed(request, model, version, admit=True) as service:
        yield service


def v2_model(request: Request) -> Iterator[InferenceService]:
    """``/v2/models/{name}[/versions/{version}]``: the version it names (metadata, ready)."""
    name, version = request.path_params["name"], request.path_params.get("version")
    with routed(request, name, version, admit=False) as service:
        yield service


def v2_inference(request: Request) -> Iterator[InferenceService]:
    """``/v2/models/{name}[/versions/{version}]/infer``: the version serving it."""
    name, version = request.path_params["name"], request.path_params.get("version")
    with routed(request, name, version, admit=True) as service:
        yield service


def get_caller(request: Request) -> Caller:
    async def gone() -> None:
        # After the body was read, receive() waits for the disconnect message.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return Caller(gone=gone, request=request)


async def get_uploads(
    request: Request,
    filename: Annotated[
        str | None, Query(description="the image's name, for a raw image body")
    ] = None,
) -> list[Upload]:
    """The request's images: multipart parts, a raw image body, or JSON base64 (see
    service.protocols.uploads); the body size limit was enforced while they arrived."""
    return await read_uploads(request, filename)


ServiceDep = Annotated[InferenceService, Depends(query_routed_service)]
V2ModelDep = Annotated[InferenceService, Depends(v2_model)]
V2InferenceDep = Annotated[InferenceService, Depends(v2_inference)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
UploadsDep = Annotated[list[Upload], Depends(get_uploads)]
CallerDep = Annotated[Caller, Depends(get_caller)]
