"""A storm from ``wrk`` (Debian's package): a native load generator that costs the box little
CPU, so that what a no-back-off storm measures is the server, not a Python client.

wrk sends one multipart ``POST`` (the body read from a file by its Lua script) on every
connection as fast as answers come; the script counts answers by status in each thread and
prints them, with the latency percentiles, when the run ends.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCRIPT = """
local file = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "{content_type}"
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {{}} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {{}}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  io.write("STATUSES")
  for status, count in pairs(total) do io.write(" ", status, "=", count) end
  io.write(string.format("\\nLATENCY_US p50=%d p99=%d\\n", latency:percentile(50),
                         latency:percentile(99)))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def wrk_storm(
    url: str, body: bytes, content_type: str, connections: int, seconds: float, threads: int = 1
) -> dict[str, Any]:
    """Answers by status, per second and in all, and wrk's latency p50/p99 (every answer)."""
    with tempfile.TemporaryDirectory() as scratch:
        body_file = Path(scratch) / "body"
        body_file.write_bytes(body)
        script = Path(scratch) / "post.lua"
        script.write_text(SCRIPT.format(body=body_file, content_type=content_type))
        result = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
             "-s", str(script), url],
            capture_output=True, text=True, timeout=seconds + 120, check=True,
        )  # fmt: skip
    counted = result.stdout.split("STATUSES", 1)[1].split("\n", 1)[0]
    statuses = {int(status): int(count) for status, count in re.findall(r"(\d+)=(\d+)", counted)}
    p50, p99 = (int(v) for v in re.findall(r"p(?:50|99)=(\d+)", result.stdout)[:2])
    errors = re.search(r"Socket errors: (.*)", result.stdout)
    return {
        "statuses": statuses,
        "latency_p50_ms": p50 / 1000,
        "latency_p99_ms": p99 / 1000,
        "socket_errors": errors.group(1) if errors else "none",
        "seconds": seconds,
    }
