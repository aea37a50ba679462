"""Numbers and JSON from the outside, parsed one bounded way for every header and body.

Python's own parsers fail in ways a client can choose: ``str.isdigit()`` accepts digits
``int()`` rejects (``"²"``), ``int()`` refuses more than 4,300 digits, a huge integer
overflows ``float``, and ``json.loads`` recurses once per nesting level. Every number and
JSON document a request carries goes through here instead, so each of those is a
:class:`Unparseable` (a ``ValueError`` the caller answers with a 4xx), never a 500.
"""

from __future__ import annotations

import json
from typing import Any

# More digits than any length, count or timeout the service accepts.
MAX_DIGITS = 18


class Unparseable(ValueError):
    """A number or JSON document that cannot be read; the message says why."""


def count(text: str | bytes) -> int:
    """A non-negative integer written in plain ASCII digits (at most :data:`MAX_DIGITS`)."""
    raw = text.encode("latin-1", "replace") if isinstance(text, str) else text
    if not raw.isdigit() or len(raw) > MAX_DIGITS:  # bytes.isdigit(): ASCII digits only
        shown = raw[:20].decode("latin-1")
        raise Unparseable(f"{shown!r}{'…' if len(raw) > 20 else ''} is not a count")
    return int(raw)


def json_value(raw: bytes) -> Any:
    """``raw`` as JSON. Nesting deeper than the interpreter's recursion limit is refused by
    the C parser itself (a clean RecursionError, caught here): no pre-scan in Python."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and the int limit too
        raise Unparseable(f"not valid JSON: {exc}") from exc


def whole(value: Any, where: str, maximum: int) -> int:
    """A JSON integer (not a bool, not a float) between 0 and ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise Unparseable(f"{where} must be an integer from 0 to {maximum:,}, got {value!r:.40}")
    return value
