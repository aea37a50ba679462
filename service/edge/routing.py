"""What a request is, from its method and path alone: the first step of the gate.

Whether it needs the API key, and which model version it asks for: ``/classify`` and
``/features`` name it with ``?model=`` and ``?version=``; the Open Inference Protocol in the
path (``/v2/models/{name}[/versions/{version}]``, plus ``/ready`` or ``/infer``);
``/v1/embeddings`` in its JSON body. The v2 path templates are defined here, compiled with
Starlette's own path compiler, and the routers register the same strings
(:mod:`service.routes.v2`), so the gate and FastAPI read a path the same way; the gate's
reading is the one the request is served by.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from starlette.datastructures import QueryParams
from starlette.routing import compile_path
from starlette.types import Scope

from service.web.pages import is_page

CLASSIFY, FEATURES, EMBEDDINGS = "/classify", "/features", "/v1/embeddings"
V2_MODEL = "/v2/models/{name}"
V2_MODEL_VERSION = "/v2/models/{name}/versions/{version}"
V2_READY, V2_INFER = "/ready", "/infer"  # suffixes of both model paths
# Repository control: what changes the models served (off by default; its own key).
V2_LOAD = "/v2/repository/models/{name}/load"
V2_UNLOAD = "/v2/repository/models/{name}/unload"

# Open without the API key: probes, metrics scrapes, the API's own documentation, and the
# pages (service.web.pages): the try-it page asks for the key itself.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/v2/health/live", "/v2/health/ready"}
)


class Names(Enum):
    """Where a request names the model that serves it."""

    NOTHING = "nothing"  # no model serves it (probes, listings, pages, control)
    QUERY = "query"  # ?model=&version= (default: the default model's newest version)
    PATH = "path"  # /v2/models/{name}[/versions/{version}]
    BODY = "body"  # the JSON body's "model": routed again once the body is parsed


class Route(NamedTuple):  # a tuple: built on every request, and cheaply
    """One request's reading: which model (name, version; None = default/newest) it asks
    for and where it said so, whether it carries images (admission applies), and whether
    it needs the API key."""

    public: bool
    names: Names = Names.NOTHING
    model: str | None = None
    version: str | None = None
    inference: bool = False
    control: bool = False  # changes what is served: XCEPTION_MODEL_CONTROL, the admin key


_V2_PATHS = [
    (method, compile_path(template + suffix)[0], suffix == V2_INFER)
    for template in (V2_MODEL, V2_MODEL_VERSION)
    for method, suffix in (("GET", ""), ("GET", V2_READY), ("POST", V2_INFER))
]


def route_of(scope: Scope) -> Route:
    """The :class:`Route` of an HTTP request scope (decided from the request line only)."""
    path: str = scope["path"]
    method: str = scope.get("method", "")
    public = path in PUBLIC_PATHS or is_page(path)
    if method == "POST" and path in (CLASSIFY, FEATURES):
        if not scope.get("query_string"):
            return Route(public, Names.QUERY, inference=True)
        # Starlette's parsing, as the route's Query parameters see it (the last value wins).
        query = QueryParams(scope["query_string"])
        return Route(public, Names.QUERY, query.get("model"), query.get("version"), True)
    if method == "POST" and path == EMBEDDINGS:
        return Route(public, Names.BODY, inference=True)
    control = path.startswith("/v2/repository/models/")
    if control and method == "POST" and any(p.match(path) for p in _CONTROL_PATHS):
        return _CONTROL
    if path.startswith("/v2/models/"):
        for wanted, pattern, inference in _V2_PATHS:
            if method == wanted and (match := pattern.match(path)):
                named = match.groupdict()
                return Route(public, Names.PATH, named["name"], named.get("version"), inference)
    return _PUBLIC if public else _PRIVATE


_PUBLIC, _PRIVATE, _CONTROL = Route(True), Route(False), Route(False, control=True)
_CONTROL_PATHS = [compile_path(template)[0] for template in (V2_LOAD, V2_UNLOAD)]
