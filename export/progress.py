"""Step lines with timings, so long export work is never silent.

Deliberately tiny: each step prints ``[i/n] what ...`` when it starts and
``[i/n] what: done in 1.2s (detail)`` when it ends, on stderr, flushed, so the
lines show up live in docker logs and CI output as well as in a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Steps:
    """Numbered progress lines for a fixed sequence of steps."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.index = 0
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()

    @contextmanager
    def step(self, what: str) -> Iterator[dict[str, str]]:
        """Time one step; put a ``detail`` into the yielded dict to append it to the end line."""
        self.index += 1
        prefix = f"[{self.index}/{self.total}] {what}"
        print(f"{prefix} ...", file=self.stream, flush=True)
        t0 = time.perf_counter()
        info: dict[str, str] = {}
        yield info
        elapsed = time.perf_counter() - t0
        detail = f" ({info['detail']})" if info.get("detail") else ""
        print(f"{prefix}: done in {elapsed:.1f}s{detail}", file=self.stream, flush=True)

    def finish(self, message: str) -> None:
        """Print the closing line with the total time."""
        elapsed = time.perf_counter() - self.started
        print(f"{message} (total {elapsed:.1f}s)", file=self.stream, flush=True)
