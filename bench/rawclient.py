"""A minimal HTTP/1.1 load client on raw asyncio streams, for storms of many clients.

Why not httpx here: a storm's clients retry at once after each refusal, so the client's own
CPU cost per request decides how much of this 2-core machine the *load generator* takes from
the server. A real storm comes from other machines. Pre-built request bytes and a response
reader that parses only the status line and Content-Length cost a fraction of a full client,
so what the benchmark measures is the server's cost of refusing, not the client's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field


def multipart_request(host: str, port: int, path: str, name: str, data: bytes) -> bytes:
    """The bytes of ``POST path`` with one multipart part ``file`` holding ``data``."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


@dataclass
class Outcomes:
    """Latency (seconds) of every answer by status; transport errors counted apart."""

    by_status: dict[int, list[float]] = field(default_factory=dict)
    transport_errors: int = 0

    def add(self, status: int, seconds: float) -> None:
        self.by_status.setdefault(status, []).append(seconds)

    def count(self, status: int) -> int:
        return len(self.by_status.get(status, []))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, server closes the connection) after reading one whole response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, close


async def _client(
    host: str, port: int, requests: list[bytes], offset: int, until: float, out: Outcomes
) -> None:
    """One client: send, read the answer, send the next at once (no back-off) until ``until``."""
    turn = offset
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(requests[turn % len(requests)])
            turn += 1
            status, close = await _read_response(reader)
            out.add(status, time.perf_counter() - started)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            out.transport_errors += 1
            close = True
        if close and writer is not None:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def _storm(
    host: str, port: int, requests: list[bytes], clients: int, seconds: float
) -> tuple[Outcomes, float]:
    out = Outcomes()
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(*(_client(host, port, requests, i, until, out) for i in range(clients)))
    return out, time.monotonic() - started


def storm(
    host: str, port: int, requests: list[bytes], clients: int, seconds: float
) -> tuple[Outcomes, float]:
    """``clients`` closed-loop clients for ``seconds``; returns the outcomes and elapsed time."""
    return asyncio.run(_storm(host, port, requests, clients, seconds))
