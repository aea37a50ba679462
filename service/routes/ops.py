"""Operations endpoints: liveness, readiness, the models and their runtimes, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.policy import KEYED, PUBLIC, edge
from service.repository.listing import models_listing
from service.routes.deps import ListedSettingsDep, RepositoryDep
from service.routes.schemas import ModelsResponse, Status, answers

router = APIRouter(responses=answers())


@router.get("/healthz", response_model=Status)
@edge(PUBLIC)
async def healthz() -> Status:
    """200 while the process is alive."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses=answers(503))
@edge(PUBLIC)
async def readyz(repository: RepositoryDep) -> Status:
    """200 once every model to serve has a version loaded and warm; 503 (saying which is
    not) before, and while draining."""
    repository.require_ready()
    return Status(status="ready")


@router.get("/v1/models", response_model=ModelsResponse)
@edge(KEYED)
async def models(repository: RepositoryDep, server: ListedSettingsDep) -> ModelsResponse:
    """Every model and version with its state; loaded ones with card, runtime and counters."""
    return ModelsResponse(**models_listing(repository, server))


@router.get("/metrics", response_class=Response)
@edge(PUBLIC)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
