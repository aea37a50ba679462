"""Which versions of each model serve (``XCEPTION_VERSION_POLICY``, as Triton's version policy),
and the rest of the repository's slice of the settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

POLICY = re.compile(r"latest(?::([1-9][0-9]*))?|all")


@dataclass(frozen=True)
class VersionPolicy:
    """``latest`` (the newest), ``latest:N`` (the N newest) or ``all``, as in Triton."""

    newest: int | None  # None: all versions

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """The policy ``text`` names; ValueError saying the accepted forms otherwise."""
        match = POLICY.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a version policy: use latest, latest:N or all")
        if text.strip() == "all":
            return cls(None)
        return cls(int(match.group(1) or 1))

    def select(self, versions: list[str]) -> list[str]:
        """The versions to serve among ``versions`` (digit strings), newest first."""
        ordered = sorted(versions, key=int, reverse=True)
        return ordered if self.newest is None else ordered[: self.newest]

    def __str__(self) -> str:
        if self.newest is None:
            return "all"
        return "latest" if self.newest == 1 else f"latest:{self.newest}"


@dataclass(frozen=True)
class RepositorySettings:
    """The repository's slice of the settings: which versions serve
    (``XCEPTION_VERSION_POLICY``, ``…_DEFAULT_MODEL``), how often to rescan (``…_POLL_S``), the
    decode threads (``…_DECODE_THREADS``, as a count) and the drain time (``…_DRAIN_TIMEOUT_S``)."""

    policy: VersionPolicy
    default_model: str | None
    poll_s: float
    decode_workers: int
    drain_timeout_s: float
