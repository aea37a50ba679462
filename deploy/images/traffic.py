"""Steady /classify traffic through a rollout: every answer must be a 200, and the new version
must take over. Standard library only (it runs on the host, outside the images).

    python3 deploy/images/traffic.py URL PHOTO --until-version 2 [--timeout-s 300]

Two clients send one photo each, back to back, until ``--until-version`` has answered five
times in a row for each of them (or the time runs out). Prints one summary line; exit 0 only
when no request failed and the new version took over.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path


def classify(url: str, photo: Path) -> tuple[int, str]:
    """One multipart POST /classify: (status, version that answered or the error body)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{photo.name}"'
            f"\r\nContent-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/classify?top_k=1",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)["model"]["version"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:200]
    except OSError as exc:  # refused, reset, timed out: a failure as much as a 5xx
        return 0, repr(exc)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("photo", type=Path)
    parser.add_argument("--until-version", required=True)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout_s
    answers: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        in_a_row = 0
        while in_a_row < 5 and time.monotonic() < deadline:
            status, said = classify(args.url, args.photo)
            with lock:
                if status == 200:
                    answers[said] += 1
                else:
                    failures.append(f"{status}: {said}")
            in_a_row = in_a_row + 1 if status == 200 and said == args.until_version else 0

    clients = [threading.Thread(target=client) for _ in range(2)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    took_over = answers[args.until_version] >= 10
    print(
        f"-- rollout traffic: {sum(answers.values())} answered by version "
        f"{dict(sorted(answers.items()))}, {len(failures)} failed"
        + ("" if took_over else f"; version {args.until_version} did not take over")
    )
    for failure in failures[:5]:
        print(f"   {failure}", file=sys.stderr)
    return 0 if took_over and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
