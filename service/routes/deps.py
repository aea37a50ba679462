"""What the routes declare: the version serving the request, its context, its uploads, the
repository, and the slices of the settings a route hands on (the URL policy, the listing).

The gate (:mod:`service.edge.gate`) routed, authenticated and admitted the request before any
of this runs, from the route Starlette matches and the same query; the ``?model=``/
``?version=`` and ``{name}`` parameters FastAPI parses here pick the version that serves it
(:meth:`Passage.reroute`: the one admitted, unless they name another).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request

from service.core.context import RequestContext
from service.core.inference import InferenceService, Upload
from service.edge.gate import Passage, passage_of
from service.protocols.image_sources import UrlPolicy
from service.protocols.openai import EmbeddingsRequest, parse_embeddings
from service.protocols.uploads import read_uploads
from service.repository.repository import ModelRepository


def get_url_policy(request: Request) -> UrlPolicy:
    """Where ``/v1/embeddings`` may fetch image URLs from (XCEPTION_URL_HOSTS…)."""
    urls: UrlPolicy = request.app.state.url_policy
    return urls


def get_listed_settings(request: Request) -> dict[str, Any]:
    """The server-wide limits ``/v1/models`` shows beside each version's own."""
    listed: dict[str, Any] = request.app.state.listed_settings
    return listed


def get_repository(request: Request) -> ModelRepository:
    repository: ModelRepository = request.app.state.repository
    return repository


def get_passage(request: Request) -> Passage:
    passage = passage_of(request.scope)
    assert passage is not None, "every HTTP request passes the gate"
    return passage


def get_context(passage: Annotated[Passage, Depends(get_passage)]) -> RequestContext:
    """The request's deadline, admission ticket and client-gone signal (born at the gate)."""
    return passage.context


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
    inference: Annotated[InferenceService, Depends(served_by_query)],
    filename: Annotated[
        str | None, Query(description="the image's name, for a raw image body")
    ] = None,
) -> list[Upload]:
    """The request's images: multipart parts, a raw image body, or JSON base64 (see
    service.protocols.uploads); the body size limit was enforced while they arrived."""
    return await read_uploads(request, filename, inference.limits.admission)


async def get_embeddings_body(
    request: Request, passage: Annotated[Passage, Depends(get_passage)]
) -> EmbeddingsRequest:
    """The ``/v1/embeddings`` body, its inputs counted before any is validated (read here,
    not by FastAPI, which validates every element first; its schema: routes.schemas)."""
    media = request.headers.get("content-type", "")
    return parse_embeddings(await request.body(), media, passage.repository.limits.admission)


RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
QueryServedDep = Annotated[InferenceService, Depends(served_by_query)]
PathServedDep = Annotated[InferenceService, Depends(served_by_path)]
UploadsDep = Annotated[list[Upload], Depends(get_uploads)]
EmbeddingsBodyDep = Annotated[EmbeddingsRequest, Depends(get_embeddings_body)]
PassageDep = Annotated[Passage, Depends(get_passage)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
UrlPolicyDep = Annotated[UrlPolicy, Depends(get_url_policy)]
ListedSettingsDep = Annotated[dict[str, Any], Depends(get_listed_settings)]
VersionDep = Depends(model_version)
