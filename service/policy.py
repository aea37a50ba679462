"""What each route declares for the edge: public or keyed, whether it carries images, where it
names its model, whether it changes what is served.

Declared once, on the route itself: ``@edge(POLICY)`` under the route decorator, or
:func:`declare` for a route whose endpoint is not ours (FastAPI's docs, a static mount). The
gate (:mod:`service.edge.routing`) reads it from the route the request matches; a route that
declares nothing is keyed (secure by default), and ``tests/test_architecture.py`` refuses one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

POLICY_ATTRIBUTE = "edge_policy"


class Names(Enum):
    """Where a request names the model that serves it."""

    NOTHING = "nothing"  # no model serves it (probes, listings, pages, control)
    QUERY = "query"  # ?model=&version= (default: the default model's newest version)
    PATH = "path"  # /v2/models/{name}[/versions/{version}]
    BODY = "body"  # the JSON body's "model": admitted once the body is parsed


@dataclass(frozen=True)
class EdgePolicy:
    """What the gate needs to know of a route before its body is read."""

    public: bool = False  # no API key: probes, metrics, the docs, the pages
    names: Names = Names.NOTHING
    inference: bool = False  # carries images: admission applies
    control: bool = False  # changes what is served: XCEPTION_MODEL_CONTROL and the admin key


PUBLIC = EdgePolicy(public=True)
KEYED = EdgePolicy()
CONTROL = EdgePolicy(control=True)
INFERENCE_BY_QUERY = EdgePolicy(names=Names.QUERY, inference=True)
INFERENCE_BY_BODY = EdgePolicy(names=Names.BODY, inference=True)
MODEL_BY_PATH = EdgePolicy(names=Names.PATH)
INFERENCE_BY_PATH = EdgePolicy(names=Names.PATH, inference=True)

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def edge(policy: EdgePolicy) -> Callable[[Endpoint], Endpoint]:
    """Declare an endpoint's edge policy (put it under the route decorator)."""

    def declared(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, POLICY_ATTRIBUTE, policy)
        return endpoint

    return declared


def declare(route: object, policy: EdgePolicy) -> None:
    """Declare the policy of a route whose endpoint is not ours (FastAPI's docs, a mount)."""
    setattr(route, POLICY_ATTRIBUTE, policy)


def policy_of(route: object) -> EdgePolicy | None:
    """A route's declared policy (None: undeclared; the architecture test refuses that)."""
    declared: EdgePolicy | None = getattr(route, POLICY_ATTRIBUTE, None)
    if declared is None:
        declared = getattr(getattr(route, "endpoint", None), POLICY_ATTRIBUTE, None)
    return declared
