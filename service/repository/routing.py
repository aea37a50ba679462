"""Which model a request asks for, read from its URL before the body arrives.

``/classify`` and ``/features`` name it with ``?model=`` and ``?version=``; the Open Inference
Protocol in the path, ``/v2/models/{name}[/versions/{version}]/infer``; ``/v1/embeddings``
in its JSON body, so before the body it is admitted against the default model (and routed
again, after parsing, when the body names another).
"""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.types import Scope

from service.admission import Admission, Refusal
from service.errors import NotReady, ServiceError
from service.inference import NOT_READY_RETRY_AFTER_S
from service.repository.repository import ModelRepository

QUERY_ROUTED = frozenset({"/classify", "/features"})
DEFAULT_ROUTED = frozenset({"/v1/embeddings"})


def requested_model(scope: Scope) -> tuple[str | None, str | None] | None:
    """(name, version) the URL asks for (None: the default), or None when it does not say."""
    path: str = scope["path"]
    if path in QUERY_ROUTED:
        # Starlette's parsing, as the route's Query parameters see it (the last value wins).
        params = QueryParams(scope.get("query_string", b""))
        return params.get("model"), params.get("version")
    if path in DEFAULT_ROUTED:
        return None, None
    parts = path.split("/")  # "", "v2", "models", name, ["versions", version,] "infer"
    if len(parts) == 5 and parts[1:3] == ["v2", "models"]:
        return parts[3], None
    if len(parts) == 7 and parts[1:3] == ["v2", "models"] and parts[4] == "versions":
        return parts[3], parts[5]
    return None


def admit(repository: ModelRepository, scope: Scope) -> Admission | Refusal:
    """The admission of an inference request, from its headers alone."""
    if repository.drain.draining:
        return Refusal("shutting_down", "the server is shutting down; retry on another replica", 1)
    wanted = requested_model(scope)
    if wanted is None:
        return Admission()
    try:
        version = repository.resolve(*wanted)
    except NotReady as exc:
        return Refusal("not_ready", exc.message, exc.retry_after_s or NOT_READY_RETRY_AFTER_S)
    except ServiceError:
        return Admission()  # unknown model, no default: the route answers, naming what exists
    assert version.service is not None
    decision = version.service.admit()
    if isinstance(decision, Refusal):
        return decision
    return Admission(version, decision)
