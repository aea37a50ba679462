"""``python -m bench profile``: where the service spends its CPU under load, from py-spy.

Steps: take (or export) a model → start ``xception-serve`` (``--service-env`` settings, e.g.
an int8 model's) → warm it → drive ``--concurrency`` closed-loop clients while py-spy (PyPI)
samples the server without pausing it (Python frames; py-spy cannot take native frames
without stopping the process at each sample) → a flame graph (SVG) and a table of the top
frames by share of samples, self and inclusive, per thread kind (event loop, decode, inference)
→ ``bench/results/<stamp>-profile*.{svg,json,md}``. py-spy reads the process from outside: run
it as root, or where ``ptrace`` of a child is allowed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from artifact.layout import DEFAULT_MODEL_FOLDER
from bench.engine import make_uploads
from bench.loadgen import classify_request, drive, start_service
from bench.report import ROOT, SOURCES, ensure_model, machine, machine_line, step, write_results

TOP = 15
# Frames of this project's own code, for the inclusive table: which of our calls cost what.
OWN_CODE = re.compile(r"\((artifact|service|bulk)/")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_FOLDER)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=20, help="sampling time under load")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--label", default="")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    beside = Path(sys.executable).with_name("py-spy")  # a venv's, when not on PATH
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy (the dev extra has it)")
    model = ensure_model(args.model)
    uploads = make_uploads(SOURCES)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"profile{'-' + args.label if args.label else ''}"
    stem = args.out / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-flame"
    service = start_service(model, args.service_env, "cpu")
    try:
        drive(service.url, uploads, 2, 8, classify_request)
        common = ["record", "-p", str(service.process.pid), "-d", str(args.seconds),
                  "-r", str(args.rate), "--threads", "--nonblocking"]  # fmt: skip
        step(f"py-spy: {args.seconds}s at {args.rate} Hz under {args.concurrency} clients")
        recorders = [
            subprocess.Popen([spy, *common, "-f", "raw", "-o", f"{stem}.txt"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([spy, *common, "-f", "flamegraph", "-o", f"{stem}.svg"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]  # fmt: skip
        load = threading.Thread(target=_load_until_done, args=(service.url, uploads, args,
                                                               recorders))  # fmt: skip
        load.start()
        for recorder in recorders:
            if recorder.wait(args.seconds + 120) != 0:
                raise SystemExit(f"py-spy failed (status {recorder.returncode}): run as root?")
        load.join()
    finally:
        service.stop()
    stacks = Path(f"{stem}.txt")
    results = {**machine(), "kind": "profile", "args": {k: str(v) for k, v in vars(args).items()},
               "flame_graph": f"{stem.name}.svg", **top_frames(stacks.read_text())}  # fmt: skip
    stacks.unlink()
    write_results(args.out, results, name, markdown)
    return 0


def _load_until_done(url: str, uploads: list, args: argparse.Namespace, recorders: list) -> None:
    while any(r.poll() is None for r in recorders):
        drive(url, uploads, args.concurrency, 4 * args.concurrency, classify_request)


def thread_kind(name: str) -> str:
    """py-spy's thread label → which part of the service it is."""
    for kind in ("inference", "decode", "MainThread"):
        if kind in name:
            return "event loop" if kind == "MainThread" else kind
    return "other"


def top_frames(raw: str) -> dict[str, Any]:
    """Self shares per frame (function and file) and inclusive shares of our own frames, per
    thread kind."""
    total = 0
    own: Counter[tuple[str, str]] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    threads: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        kind, samples = thread_kind(frames[0]), int(count)
        total += samples
        threads[kind] += samples
        names = [re.sub(r":\d+\)$", ")", frame) for frame in frames[1:]]
        if names:
            own[(kind, names[-1])] += samples
        for name in set(names):
            if OWN_CODE.search(name):  # the thread plumbing above them says nothing
                inclusive[(kind, name)] += samples
    share = {kind: n / total for kind, n in threads.most_common()} if total else {}

    def rows(counter: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
        return [
            {"thread": kind, "frame": frame, "share": n / total}
            for (kind, frame), n in counter.most_common(TOP)
        ]

    return {"samples": total, "thread_share": share, "self": rows(own),
            "inclusive": rows(inclusive)}  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "### Profile under load (py-spy, Python frames): " + machine_line(results),
        "",
        f"{results['samples']} samples; by thread: "
        + ", ".join(f"{k} {v:.0%}" for k, v in results["thread_share"].items())
        + f". Settings: {results['args']['service_env']}. Flame graph: "
        f"`{results['flame_graph']}`.",
    ]
    for title in ("self", "inclusive"):
        what = "self" if title == "self" else "inclusive, this project's code"
        lines += ["", f"| thread | top frames ({what}) | share |", "|---|---|---|"]
        lines += [f"| {r['thread']} | `{r['frame']}` | {r['share']:.1%} |" for r in results[title]]
    return "\n".join([*lines, ""])
