"""``python -m bench edge``: what the request path costs outside the engine, per request.

In-process, no sockets and no load generator on the same cores: the app serves a model (the
API key set), and each case is sent ``--requests`` times straight to the ASGI app, on the
app's own event loop, through every middleware. Measured: CPU time per request (process
time; the engine stays idle: nothing reaches it). Cases:

- ``probe``: ``GET /v2/models/{name}/ready``: routed to a version, leased, answered by a route;
- ``refusal``: ``POST /classify`` (a 64 kB body, never read) refused by admission before the
  body (the measured time per image is set so that the bound never holds);
- ``unauthorized``: ``POST /classify`` without the key;
- ``not_found``: ``GET`` of an unknown path (the envelope's 404).

Besides CPU time (noisy on a shared machine: compare medians of interleaved runs), the
Python function calls per request, counted by cProfile over one more round: deterministic,
so two versions of the code compare exactly on any machine.

Comparing two versions of the code: run this file from each checkout (``--label``); the
figures of one machine are comparable with each other only.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from artifact.layout import DEFAULT_MODEL_FOLDER
from bench.report import ROOT, ensure_model, machine, step, write_results

KEY = "bench-key"
CONNECTIONS = itertools.count()  # the client port of each request, across rounds
BODY = b"\x00" * 65536


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench edge", description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_FOLDER)
    parser.add_argument("--requests", type=int, default=5000, help="per case and round")
    parser.add_argument("--rounds", type=int, default=5, help="the median round is reported")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--label", default="", help="name suffix for the results files")
    return parser.parse_args(argv)


def request(method: str, path: str, *, key: bool = True, body: bytes = b"") -> dict[str, Any]:
    headers = [(b"host", b"bench"), (b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"multipart/form-data; boundary=x"))
    if key:
        headers.append((b"authorization", f"Bearer {KEY}".encode()))
    path_only, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path_only, "raw_path": path_only.encode(),
        "query_string": query.encode(), "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 9), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    return {"scope": scope, "body": body}


async def calls_per_request(app: Any, case: dict[str, Any], count: int) -> float:
    """Python function calls per request (cProfile's count: the same on every run)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    await cpu_per_request(app, case, count)
    profile.disable()
    total: int = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    return total / count


async def cpu_per_request(app: Any, case: dict[str, Any], count: int) -> tuple[float, int]:
    """Microseconds of CPU per request, and the status the case was answered with."""
    statuses = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": case["body"], "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.process_time()
    for _ in range(count):
        # Each request on a connection of its own: a refused connection that came back would
        # be held for its Retry-After (service/edge/pacing.py), and measured asleep.
        client = ("127.0.0.1", 1024 + next(CONNECTIONS) % 60000)
        await app(dict(case["scope"], state={}, client=client), receive, send)
    return (time.process_time() - started) / count * 1e6, statuses[-1]


def main(argv: list[str] | None = None) -> int:
    from service.app import create_app
    from service.config.settings import Settings

    options = parse_args(argv)
    model = ensure_model(options.model)
    settings = Settings(model=model, device="cpu", api_key=KEY, log_level="warning")
    step(f"serving {model} in-process; {options.rounds} rounds of {options.requests} per case")
    results: dict[str, Any] = {"machine": machine(), "requests": options.requests, "cases": {}}
    with TestClient(create_app(settings)) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        app: Any = client.app
        portal = client.portal
        assert portal is not None
        version = app.state.repository.resolve(None, None)
        version.inference.batcher.stats.seconds_per_image = 1e6
        version.inference.admission.admit()  # one image ahead, for ever: every inference refused
        cases = {
            "probe": request("GET", f"/v2/models/{version.name}/ready"),
            "refusal": request("POST", "/classify", body=BODY),
            "unauthorized": request("POST", "/classify", key=False, body=BODY),
            "not_found": request("GET", "/nope"),
        }
        for name, case in cases.items():
            rounds = [
                portal.call(cpu_per_request, app, case, options.requests)
                for _ in range(options.rounds)
            ]
            statuses = {status for _, status in rounds}
            micros = statistics.median(us for us, _ in rounds)
            calls = portal.call(calls_per_request, app, case, 200)
            results["cases"][name] = {"status": sorted(statuses), "cpu_us": micros, "calls": calls}
            step(f"{name}: {sorted(statuses)}, {micros:.0f} µs of CPU, {calls:.0f} calls a request")
    write_results(options.out, results, f"edge{options.label and '-' + options.label}", markdown)
    return 0


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Request path cost outside the engine ({results['machine']['created_at']})",
        "",
        f"CPU: {results['machine']['cpu']} ({results['machine']['cores']} cores; flags: "
        f"{', '.join(results['machine']['cpu_flags']) or 'none of interest'})",
        "",
        "| case | status | CPU per request | Python calls per request |",
        "|---|---|---|---|",
    ]
    for name, case in results["cases"].items():
        status = "/".join(map(str, case["status"]))
        lines.append(f"| {name} | {status} | {case['cpu_us']:.0f} µs | {case['calls']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
