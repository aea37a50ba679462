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
    given_up: int = 0  # requests a "give-up" client abandoned (answers nobody read)

    def add(self, status: int, seconds: float) -> None:
        self.by_status.setdefault(status, []).append(seconds)

    def count(self, status: int) -> int:
        return len(self.by_status.get(status, []))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, float]:
    """(status, server closes the connection, Retry-After seconds or 0) after reading one
    whole response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close, retry_after = 0, False, 0.0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
        elif name == "retry-after":
            retry_after = float(value)
    await reader.readexactly(length)
    return status, close, retry_after


# How a client behaves after a refusal or a slow answer (python -m bench overload):
#   "storm":       resends at once after every answer, 503 included (no back-off);
#   "retry-after": after a 503, waits the Retry-After delay (as the openai SDK does);
#   "give-up":     abandons a request after GIVE_UP_S (a user, a proxy) and sends it again.
BEHAVIOURS = ("storm", "retry-after", "give-up")
GIVE_UP_S = 5.0


async def _client(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    until: float,
    out: Outcomes,
    behaviour: str = "storm",
) -> None:
    """One closed-loop client until ``until``, behaving as ``behaviour`` says."""
    turn = offset
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < until:
        pause = 0.0
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(requests[turn % len(requests)])
            turn += 1
            answer = _read_response(reader)
            limit = GIVE_UP_S if behaviour == "give-up" else None
            status, close, retry_after = await asyncio.wait_for(answer, limit)
            out.add(status, time.perf_counter() - started)
            if status == 503 and behaviour == "retry-after":
                pause = retry_after
        except asyncio.TimeoutError:
            out.given_up += 1
            close = True  # the answer still coming is for nobody: a new connection
        except (OSError, asyncio.IncompleteReadError, ValueError):
            out.transport_errors += 1
            close = True
        if close and writer is not None:
            writer.close()
            writer = None
        if pause:
            await asyncio.sleep(min(pause, max(0.0, until - time.monotonic())))
    if writer is not None:
        writer.close()


async def _storm(
    host: str, port: int, requests: list[bytes], clients: int, seconds: float, behaviour: str
) -> tuple[Outcomes, float]:
    out = Outcomes()
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(
        *(_client(host, port, requests, i, until, out, behaviour) for i in range(clients))
    )
    return out, time.monotonic() - started


def storm(
    host: str,
    port: int,
    requests: list[bytes],
    clients: int,
    seconds: float,
    behaviour: str = "storm",
) -> tuple[Outcomes, float]:
    """``clients`` closed-loop clients for ``seconds``; returns the outcomes and elapsed time."""
    return asyncio.run(_storm(host, port, requests, clients, seconds, behaviour))
