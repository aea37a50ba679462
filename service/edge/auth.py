"""The API key: ``Authorization: Bearer <key>``, compared in constant time from raw bytes."""

from __future__ import annotations

import hmac

from starlette.types import Scope

from service import errors
from service.errors import ServiceError


class ApiKey:
    """With a key configured, a request without it (or with any other bytes) is refused."""

    def __init__(self, key: str | None) -> None:
        self.expected = key.encode() if key is not None else None

    def check(self, scope: Scope) -> None:
        """Raise ``unauthorized`` unless no key is configured or the request carries it."""
        if self.expected is not None and not self._carried_by(scope):
            raise ServiceError(
                errors.UNAUTHORIZED,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
            )

    def _carried_by(self, scope: Scope) -> bool:
        """Compares raw header bytes: any byte sequence is a wrong key, never an error."""
        assert self.expected is not None
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, token = values[0].strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.expected)
