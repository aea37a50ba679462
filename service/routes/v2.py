"""Open Inference Protocol (KServe v2) REST endpoints: what Triton's and KServe's clients call.

The work is in :mod:`service.protocols.v2`; errors under ``/v2`` use the protocol's
``{"error": "message"}`` body (:mod:`service.edge.envelope`). Each model endpoint answers at
``/v2/models/{name}`` and ``/v2/models/{name}/versions/{version}``; the gate matched the same
route and admitted the request to that version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from service import __version__
from service.observability.tracing import adopt_request_id
from service.policy import INFERENCE_BY_PATH, KEYED, MODEL_BY_PATH, PUBLIC, EdgePolicy, edge
from service.protocols.v2 import infer, model_metadata, parse
from service.protocols.v2_codec import HEADER_LENGTH
from service.routes.deps import ContextDep, PathServedDep, RepositoryDep, VersionDep
from service.routes.schemas import INFER_REQUEST_BODY, answers

router = APIRouter(tags=["Open Inference Protocol (KServe v2)"], responses=answers(v2=True))
# A model's endpoints: the model not served (404), loading (503), a bad name (422).
MODEL_ANSWERS = answers(404, 422, 503, v2=True)
INFER_ANSWERS = answers(400, 404, 413, 415, 422, 499, 503, 504, v2=True)
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]
# Each model endpoint answers at both; the gate reads {name} and {version} from the route
# Starlette matches (service.edge.routing).
MODEL_PATH = "/v2/models/{name}"
MODEL_VERSION_PATH = "/v2/models/{name}/versions/{version}"


def for_both_model_paths(
    method: str, suffix: str, policy: EdgePolicy, extra: dict[str, Any] | None = None
) -> Callable[[Any], Any]:
    """Register an endpoint at the model path and at the model version path, with its edge
    policy."""
    responses = INFER_ANSWERS if policy.inference else MODEL_ANSWERS

    def register(endpoint: Any) -> Any:
        edge(policy)(endpoint)
        for path, dependencies in ((MODEL_PATH, []), (MODEL_VERSION_PATH, [VersionDep])):
            router.add_api_route(
                path + suffix, endpoint, methods=[method], responses=responses,
                openapi_extra=extra, dependencies=dependencies,
            )  # fmt: skip
        return endpoint

    return register


@router.get("/v2")
@edge(KEYED)
async def server_metadata() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return {"name": "xception-service", "version": __version__, "extensions": EXTENSIONS}


@router.get("/v2/health/live")
@edge(PUBLIC)
async def live() -> dict[str, Any]:
    """200 while the process is alive."""
    return {"live": True}


@router.get("/v2/health/ready", responses=answers(503, v2=True))
@edge(PUBLIC)
async def ready(repository: RepositoryDep) -> dict[str, Any]:
    """200 once every model to serve is warm; 503 before and while draining."""
    repository.require_ready()
    return {"ready": True}


@for_both_model_paths("GET", "", MODEL_BY_PATH)
async def metadata(inference: PathServedDep, repository: RepositoryDep) -> dict[str, Any]:
    """Inputs and outputs with datatypes and shapes (-1: the batch axis); the ready versions."""
    name = inference.card.name
    ready_versions = [entry.version for entry in repository.of(name) if entry.state == "ready"]
    return model_metadata(inference.card, ready_versions, inference.runtime.choice.describe())


@for_both_model_paths("GET", "/ready", MODEL_BY_PATH)
async def model_ready(inference: PathServedDep) -> dict[str, Any]:
    """200 when this model (version) is ready to infer (the gate routed the request to a
    ready version); 503 while loading, 404 if not served."""
    return {"name": inference.card.name, "ready": True}


@for_both_model_paths("POST", "/infer", INFERENCE_BY_PATH, INFER_REQUEST_BODY)
async def infer_endpoint(
    request: Request, inference: PathServedDep, context: ContextDep
) -> Response:
    """JSON tensors or the binary tensor extension; see service.protocols.v2 for the tensors."""
    admission = inference.limits.admission
    parsed = parse(await request.body(), request.headers.get(HEADER_LENGTH), admission)
    adopt_request_id(parsed.id)  # the response's X-Request-ID and its log lines
    reply = await infer(inference, parsed, context)
    if reply.header_length is None:
        return Response(reply.content, media_type="application/json")
    return Response(
        reply.content,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(reply.header_length)},
    )
