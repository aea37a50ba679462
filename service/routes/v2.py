"""Open Inference Protocol (KServe v2) REST endpoints: what Triton's and KServe's clients call.

The work is in :mod:`service.protocols.v2`; errors under ``/v2`` use the protocol's
``{"error": "message"}`` body (``service.errors``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service import __version__
from service.deps import CallerDep, RepositoryDep, V2InferenceDep, V2ModelDep
from service.errors import NotReady
from service.inference import NOT_READY_RETRY_AFTER_S
from service.protocols.v2 import infer, model_metadata
from service.protocols.v2_codec import HEADER_LENGTH

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (KServe v2)"])
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]


@router.get("")
async def server_metadata() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return {"name": "xception-service", "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> dict[str, Any]:
    """200 while the process is alive."""
    return {"live": True}


@router.get("/health/ready")
async def ready(repository: RepositoryDep) -> dict[str, Any]:
    """200 once every model to serve is warm; 503 before and while draining."""
    if (why := repository.readiness()) is not None:
        raise NotReady(f"not ready: {why}", retry_after_s=NOT_READY_RETRY_AFTER_S)
    return {"ready": True}


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def metadata(
    service: V2ModelDep, repository: RepositoryDep, name: str, version: str | None = None
) -> dict[str, Any]:
    """Inputs and outputs with datatypes and shapes (-1: the batch axis); the ready versions."""
    ready = [entry.version for entry in repository.of(name) if entry.state == "ready"]
    return model_metadata(service.card, ready)


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(service: V2ModelDep, name: str, version: str | None = None) -> dict[str, Any]:
    """200 when this model (version) is ready to infer; 503 while loading, 404 if not served."""
    service.require_ready()
    return {"name": name, "ready": True}


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def infer_endpoint(
    request: Request,
    service: V2InferenceDep,
    caller: CallerDep,
    name: str,
    version: str | None = None,
) -> Response:
    """JSON tensors or the binary tensor extension; see service.protocols.v2 for the tensors."""
    body = await request.body()
    content, header_length = await infer(
        service, body, request.headers.get(HEADER_LENGTH), caller.gone, caller.ticket
    )
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )
