"""What a request is, from its request line alone: the gate's first step, read from the app's
own routes.

The gate matches a request against the app's router exactly as Starlette will
(``route.matches``), so the two cannot read a path differently, and takes the edge policy
the matched route declares (:mod:`service.policy`). A path no route serves is keyed (the API
key first; then FastAPI's 404 or 405).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from starlette.datastructures import QueryParams
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from service.policy import KEYED, EdgePolicy, Names, policy_of

# (method, path) readings remembered: a request line seen before costs one lookup. Bounded:
# a client sending endless new paths makes the gate match them (as Starlette does), no more.
CACHED_READINGS = 4096


class Route(NamedTuple):  # a tuple: remembered per request line, copied per query
    """One request's reading: its route's policy, and which model (name, version; None =
    default/newest) it asks for in its path or query."""

    policy: EdgePolicy
    model: str | None = None
    version: str | None = None


UNROUTED = Route(KEYED)  # no route serves it: the key first, then FastAPI's 404 or 405


def served_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The routes a request can be served by, in the order the router tries them: an
    included router's own routes in its place (FastAPI ≥ 0.16x keeps each included router as
    one entry, its ``original_router``; older versions copied its routes into the app's)."""
    served: list[BaseRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        served += served_routes(included.routes) if included is not None else [route]
    return served


class RouteTable:
    """The app's routes with their policies, matched from the request line."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = [(route, policy_of(route) or KEYED) for route in served_routes(routes)]
        self._readings: dict[tuple[str, str], Route] = {}

    def route_of(self, scope: Scope) -> Route:
        """The :class:`Route` of an HTTP request scope."""
        key = (scope.get("method", ""), scope["path"])
        reading = self._readings.get(key)
        if reading is None:
            reading = self._match(scope)
            if len(self._readings) >= CACHED_READINGS:
                self._readings.clear()
            self._readings[key] = reading
        if reading.policy.names is Names.QUERY and scope.get("query_string"):
            # Starlette's parsing, as the route's Query parameters see it (the last value wins).
            query = QueryParams(scope["query_string"])
            return reading._replace(model=query.get("model"), version=query.get("version"))
        return reading

    def _match(self, scope: Scope) -> Route:
        """The first route that matches in full, as Starlette's router picks it."""
        for route, policy in self.routes:
            match, child = route.matches(scope)  # reads the scope; the child is a new dict
            if match is Match.FULL:
                named = child.get("path_params", {})
                if policy.names is Names.PATH:
                    return Route(policy, named.get("name"), named.get("version"))
                return Route(policy)
        return UNROUTED
