"""The Open Inference Protocol's model repository extension (what ``tritonclient`` calls):
list what the repository holds, load and unload models by name. Behind the API key."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from service import errors
from service.errors import ServiceError
from service.repository.listing import repository_index
from service.routes.deps import RepositoryDep

router = APIRouter(prefix="/v2/repository", tags=["Open Inference Protocol (KServe v2)"])


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; an empty body (tritonclient sends one) is ``{}``."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ServiceError(errors.INVALID_PARAMETER, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ServiceError(errors.INVALID_PARAMETER, "the body must be a JSON object")
    return body


@router.post("/index")
async def index(request: Request, repository: RepositoryDep) -> list[dict[str, str]]:
    """Every version in the repository (rescanned now, nothing loaded): ``{name, version,
    state, reason}``; ``{"ready": true}`` lists only the ready ones."""
    ready_only = bool((await _json_body(request)).get("ready", False))
    await repository.refresh()
    return repository_index(repository, ready_only)


@router.post("/models/{name}/load")
async def load(request: Request, repository: RepositoryDep, name: str) -> dict[str, Any]:
    """Load ``name`` per the version policy (new versions warm up before they take traffic,
    superseded ones drain), retrying failed versions; 400 with each version's reason if none
    loads."""
    parameters = (await _json_body(request)).get("parameters") or {}
    if unsupported := sorted(parameters):
        raise ServiceError(
            errors.INVALID_PARAMETER,
            f"load parameters {unsupported} are not supported: publish a new version folder "
            "(xception-export --out <repository>/<name>/<version>) instead",
        )
    ready = await repository.load_model(name)
    return {"name": name, "versions": [entry.version for entry in ready]}


@router.post("/models/{name}/unload")
async def unload(request: Request, repository: RepositoryDep, name: str) -> dict[str, Any]:
    """Stop serving ``name``: every version drains (its queued requests are answered), then
    is unloaded; it stays unloaded, whatever scans find, until loaded again."""
    await _json_body(request)  # {"parameters": {"unload_dependents": …}}: nothing depends here
    await repository.unload_model(name)
    return {"name": name, "unloaded": True}
