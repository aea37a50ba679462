"""One route table: every route declares its edge policy on itself, the gate reads a request
the way FastAPI will serve it, and a request is admitted to the model it names.

The gate's reading is compared with FastAPI's own choice, observed on the wire: the route
FastAPI handed the request to (``scope["route"]``, set when it selects an APIRoute) or, where
it selected none, its 404/405/redirect.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Mount
from starlette.types import Receive, Scope, Send

from service.app import create_app
from service.edge.routing import UNROUTED, RouteTable, served_routes
from service.policy import Names, policy_of
from tests.service.conftest import image_bytes, make_settings, publish, served, wait_ready

KEY = {"Authorization": "Bearer k3y"}


@pytest.fixture(scope="module")
def app(exported_model: Path) -> Iterator[Any]:
    built = create_app(make_settings(exported_model, api_key="k3y"))
    with TestClient(built):  # the lifespan: models loaded, the gate's table built on use
        yield built


def concrete(path: str) -> str:
    """A path of the route's template with its parameters filled in."""
    values = {"name": "xception", "version": "1", "path": "app.js"}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


def cases(app: Any) -> list[tuple[BaseRoute, str, str]]:
    found: list[tuple[BaseRoute, str, str]] = []
    for route in served_routes(app.routes):
        if isinstance(route, Mount):
            found.append((route, "GET", route.path + "/app.js"))
        else:
            for method in sorted(getattr(route, "methods", None) or ["GET"]):
                path: str = getattr(route, "path")  # noqa: B009 - every non-mount route has one
                found.append((route, method, concrete(path)))
    return found


def scope_of(method: str, path: str) -> Scope:
    """The scope a server builds for ``method path``: ``path`` percent-decoded, as ASGI says."""
    return {"type": "http", "method": method, "path": unquote(path), "root_path": "",
            "query_string": b"", "headers": []}  # fmt: skip


def test_every_route_declares_its_edge_policy(app: Any) -> None:
    """No route is left to a default: each says public or keyed, inference or not, where it
    names its model, control or not."""
    undeclared = [getattr(r, "path", r) for r in served_routes(app.routes) if not policy_of(r)]
    assert not undeclared, undeclared
    assert len(served_routes(app.routes)) >= 25  # every router included, not only the app's own


def test_the_gate_reads_every_route_as_fastapi_serves_it(app: Any) -> None:
    """Each registered route, at a concrete path, through the real app: the gate's policy is
    that route's, its model and version are the path's, and FastAPI served the same route."""
    table = RouteTable(app.routes)
    chosen: list[Any] = []

    async def observing(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)
        chosen.append(scope.get("route"))

    with TestClient(observing, raise_server_exceptions=False) as client:
        wait_ready(client)
        for route, method, path in cases(app):
            reading = table.route_of(scope_of(method, path))
            assert reading.policy is policy_of(route), (method, path)
            if reading.policy.names is Names.PATH:
                versioned = "{version}" in route.path  # type: ignore[attr-defined]
                assert (reading.model, reading.version) == ("xception", "1" if versioned else None)
            chosen.clear()
            response = client.request(method, path, headers=KEY)
            assert response.status_code != 401, (method, path)
            if isinstance(route, APIRoute) and chosen[0] is not None:
                assert chosen[0].endpoint is route.endpoint, (method, path, chosen[0].path)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/classify"), ("POST", "/classify/"), ("POST", "//classify"),
     ("GET", "/v2/models/a%2Fb/ready"), ("POST", "/v2/models/xception/versions/1/infer/x"),
     ("DELETE", "/v2/models/xception"), ("GET", "/healthz/")],
)  # fmt: skip
def test_a_path_no_route_serves_needs_the_key_and_is_not_admitted(
    app: Any, method: str, path: str
) -> None:
    """What FastAPI serves by no route (a wrong method, a trailing slash, an encoded slash in
    a name) the gate reads as no route: keyed, no model, and FastAPI answers it (404, 405,
    or a redirect) once the key is there."""
    assert RouteTable(app.routes).route_of(scope_of(method, path)) == UNROUTED
    with TestClient(app, follow_redirects=False) as client:
        assert client.request(method, path).status_code == 401
        assert client.request(method, path, headers=KEY).status_code in (307, 404, 405)


def test_an_embeddings_request_is_admitted_to_the_model_its_body_names(
    tmp_path: Path, exported_model: Path, resnet18_v1: Path
) -> None:
    """Model A (the default) at capacity, model B idle: a request whose body names B is
    served by B, not refused with A's 503 (it was admitted against the default from the
    headers, then rerouted)."""
    root = tmp_path / "models"
    publish(exported_model, root, "xception", "1")
    publish(resnet18_v1, root, "resnet18", "1")
    settings = make_settings(None, model_repository=root, default_model="xception", max_queue=1)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        busy = served(client)  # the default model's service
        held = busy.admission.admit()  # its one place taken
        image = base64.b64encode(image_bytes("chelsea.jpg")).decode()
        body = {"model": "resnet18", "input": [image]}
        answer = client.post("/v1/embeddings", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"].startswith("resnet18")
        refused = client.post("/v1/embeddings", json={"model": "xception", "input": [image]})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        held.release()
        assert client.post(
            "/v1/embeddings", json={"model": "xception", "input": [image]}
        ).is_success


def test_a_reading_depends_on_the_method_as_well_as_the_path(app: Any) -> None:
    """The table remembers readings by request line: POST /classify is inference, a GET of
    the same path that comes after it is no route (FastAPI's 405), and the other way round."""
    table = RouteTable(app.routes)
    for first, second in (("POST", "GET"), ("GET", "POST")):
        readings = {m: table.route_of(scope_of(m, "/classify")) for m in (first, second)}
        assert readings["POST"].policy.inference and readings["GET"] == UNROUTED


PUBLIC_PATHS = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/v2/health/live",
                "/v2/health/ready", "/docs", "/redoc", "/", "/ui/app.js"]  # fmt: skip
KEYED_PATHS = ["/v1/models", "/v2", "/v2/models/xception", "/v2/models/xception/ready"]


def test_probes_metrics_docs_and_pages_are_open_and_the_rest_keyed(app: Any) -> None:
    """With an API key set: what docs/reference.md lists as open (probes a kubelet calls,
    Prometheus' scrape, the docs and the try-it page) answers without it; model reads 401."""
    with TestClient(app) as client:
        wait_ready(client)
        for path in PUBLIC_PATHS:
            assert client.get(path).status_code == 200, path
        for path in KEYED_PATHS:
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=KEY).status_code == 200, path
