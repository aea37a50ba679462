"""The Open Inference Protocol's model repository extension (what ``tritonclient`` calls):
list what the repository holds (the API key), load and unload models by name (repository
control: off unless ``XCEPTION_MODEL_CONTROL=explicit``, then the admin key; the gate,
:mod:`service.edge.auth`, decided that before the body was read)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from service import errors
from service.errors import ServiceError
from service.policy import CONTROL, KEYED, edge
from service.repository.listing import repository_index
from service.routes.deps import RepositoryDep
from service.routes.schemas import answers, inlined

router = APIRouter(tags=["Open Inference Protocol (KServe v2)"], responses=answers(422, v2=True))
# Load and unload: control off (403), unknown model (404), no version loads (400).
CONTROL_ANSWERS = answers(400, 403, 404, 422, v2=True)


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    ready: StrictBool = Field(False, description="list only the ready versions")


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    parameters: dict[str, Any] = Field(default_factory=dict)


Body = TypeVar("Body", bound=BaseModel)


def _documented(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of ``model`` (optional: tritonclient may send none)."""
    schema = inlined(model.model_json_schema())
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


async def _body(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as ``model``; an empty body (tritonclient sends one) is the
    defaults. Parsed by pydantic's JSON parser: any depth, size or type of value is a 422."""
    raw = await request.body()
    if not raw.strip():
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ServiceError(errors.INVALID_PARAMETER, f"{where}: {first['msg']}") from exc


@router.post("/v2/repository/index", openapi_extra=_documented(IndexRequest))
@edge(KEYED)
async def index(request: Request, repository: RepositoryDep) -> list[dict[str, str]]:
    """Every version in the repository (rescanned now, nothing loaded): ``{name, version,
    state, reason}``; ``{"ready": true}`` lists only the ready ones."""
    ready_only = (await _body(request, IndexRequest)).ready
    await repository.refresh()
    return repository_index(repository, ready_only)


@router.post(
    "/v2/repository/models/{name}/load",
    openapi_extra=_documented(ControlRequest),
    responses=CONTROL_ANSWERS,
)
@edge(CONTROL)
async def load(request: Request, repository: RepositoryDep, name: str) -> dict[str, Any]:
    """Load ``name`` per the version policy (new versions warm up before they take traffic,
    superseded ones drain), retrying failed versions; 400 with each version's reason if none
    loads."""
    if unsupported := sorted((await _body(request, ControlRequest)).parameters):
        raise ServiceError(
            errors.INVALID_PARAMETER,
            f"load parameters {unsupported} are not supported: publish a new version folder "
            "(xception-export --out <repository>/<name>/<version>) instead",
        )
    ready = await repository.load_model(name)
    return {"name": name, "versions": [entry.version for entry in ready]}


@router.post(
    "/v2/repository/models/{name}/unload",
    openapi_extra=_documented(ControlRequest),
    responses=CONTROL_ANSWERS,
)
@edge(CONTROL)
async def unload(request: Request, repository: RepositoryDep, name: str) -> dict[str, Any]:
    """Stop serving ``name``: every version drains (its queued requests are answered), then
    is unloaded; it stays unloaded, whatever scans find, until loaded again."""
    await _body(request, ControlRequest)  # {"parameters": {"unload_dependents": …}}: none here
    await repository.unload_model(name)
    return {"name": name, "unloaded": True}
