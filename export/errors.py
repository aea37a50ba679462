"""The one exception type the export stage raises for problems a user can fix."""

from __future__ import annotations


class ExportError(Exception):
    """A user-facing failure: the CLI prints its message as one line and exits non-zero.

    Messages say what went wrong and what to do, naming the offending flag and value.
    """
