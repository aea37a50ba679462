"""Who may do what: the API key for inference and reads, the admin key for repository control.

Keys come as ``Authorization: Bearer <key>`` and are compared in constant time from the raw
header bytes. Control (load, unload: what is served) is a mode, as in Triton: ``none`` unless
``XCEPTION_MODEL_CONTROL=explicit``, and then only with ``XCEPTION_ADMIN_KEY``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from starlette.types import Scope

from service import errors
from service.edge.routing import Route
from service.errors import ServiceError


class BearerKey:
    """One configured key (None: nothing to check) and the setting that holds it."""

    def __init__(self, key: str | None, setting: str) -> None:
        self.expected = key.encode() if key is not None else None
        self.setting = setting

    def check(self, scope: Scope) -> None:
        """Raise ``unauthorized`` unless no key is configured or the request carries it."""
        if self.expected is not None and not self._carried_by(scope):
            raise ServiceError(
                errors.UNAUTHORIZED,
                f"missing or wrong key: send 'Authorization: Bearer <{self.setting}>'",
            )

    def _carried_by(self, scope: Scope) -> bool:
        """Compares raw header bytes: any byte sequence is a wrong key, never an error."""
        assert self.expected is not None
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, token = values[0].strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.expected)


@dataclass(frozen=True, repr=False)  # no repr: the keys must not reach a log line
class AccessKeys:
    """The security slice of the settings (``XCEPTION_API_KEY``, ``…_ADMIN_KEY``,
    ``…_MODEL_CONTROL``); None: no key configured."""

    api_key: str | None
    admin_key: str | None
    model_control: Literal["none", "explicit"]


class Access:
    """The credential a route needs, checked from the headers."""

    def __init__(self, keys: AccessKeys) -> None:
        self.api_key = BearerKey(keys.api_key, "XCEPTION_API_KEY")
        self.admin_key = BearerKey(keys.admin_key, "XCEPTION_ADMIN_KEY")
        self.control = keys.model_control == "explicit"

    def check(self, route: Route, scope: Scope) -> None:
        """Raise ``unauthorized`` or ``model_control_disabled``, or return: allowed."""
        if route.policy.control:
            if not self.control:
                raise ServiceError(
                    errors.MODEL_CONTROL_DISABLED,
                    "repository control is off (XCEPTION_MODEL_CONTROL=none): the server serves "
                    "what its repository holds; to load and unload models by request, start it "
                    "with XCEPTION_MODEL_CONTROL=explicit and an XCEPTION_ADMIN_KEY",
                )
            self.admin_key.check(scope)
        elif not route.policy.public:
            self.api_key.check(scope)
