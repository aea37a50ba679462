"""``python -m tests.mutation [FILE…] [--auto N] [--changed]``: plant each mutant, run the tests
that cover its file, restore the file; print killed and surviving mutants (tests/README.md)."""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

from tests.conftest import REUSE_MODEL_VARIABLE, export_test_model
from tests.mutation.generate import Mutant, generated

ROOT = Path(__file__).resolve().parents[2]
TARGETS = Path(__file__).with_name("targets.toml")
FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Planted:
    mutant: Mutant
    tests: tuple[str, ...]  # pytest arguments: files, folders or node ids


@dataclass(frozen=True)
class Outcome:
    planted: Planted
    verdict: str  # killed | survived | timeout | broken (the tests could not even run)
    seconds: float
    by: str = ""  # the first test that failed


def tests_for(file: str, mapping: dict[str, list[str]]) -> tuple[str, ...]:
    """The tests that cover ``file``: the most specific entry, the file's own or its nearest
    folder's (none: empty)."""
    for key in sorted(mapping, key=len, reverse=True):
        if file == key or file.startswith(key.rstrip("/") + "/"):
            return tuple(mapping[key])
    return ()


def listed(targets: dict, files: set[str] | None) -> list[Planted]:
    """The reviewers' mutants in ``targets.toml`` (for ``files`` only, when given)."""
    planted = []
    for entry in targets.get("mutant", []):
        if files is not None and entry["file"] not in files:
            continue
        source = (ROOT / entry["file"]).read_text()
        count = source.count(entry["old"])
        if count != 1:
            raise SystemExit(
                f"targets.toml: {entry['name']!r}: its text occurs {count} times in "
                f"{entry['file']} (must be once; update the mutant with the code)"
            )
        begin = source.index(entry["old"])
        line = source.count("\n", 0, begin) + 1
        column = begin - (source.rfind("\n", 0, begin) + 1)
        end_line = line + entry["old"].count("\n")
        end_column = (
            column + len(entry["old"]) if end_line == line else len(entry["old"].rsplit("\n", 1)[1])
        )
        mutant = Mutant(entry["file"], line, entry["name"], entry["old"], entry["new"],
                        (line, column), (end_line, end_column))  # fmt: skip
        tests = tuple(entry.get("tests") or tests_for(entry["file"], targets["tests"]))
        planted.append(Planted(mutant, tests))
    return planted


def changed_lines(file: str, base: str) -> set[int]:
    """Lines of ``file`` that differ from ``base`` in the working tree (new files: all)."""
    diff = subprocess.run(["git", "diff", "-U0", base, "--", file], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", file], cwd=ROOT,
                             capture_output=True).returncode == 0  # fmt: skip
    if not tracked:
        return set(range(1, (ROOT / file).read_text().count("\n") + 2))
    lines: set[int] = set()
    for start, count in re.findall(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", diff, re.MULTILINE):
        first, many = int(start), int(count or 1)
        lines |= set(range(first, first + many))
    return lines


def run(planted: Planted, timeout_s: float, model: Path | None) -> Outcome:
    path = ROOT / planted.mutant.file
    original = path.read_text()
    env = dict(os.environ)
    # The export stage is under test when the mutant is in it: no model made before.
    if model is not None and not planted.mutant.file.startswith("export/"):
        env[REUSE_MODEL_VARIABLE] = str(model)
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly",
               "-p", "no:cacheprovider", "--no-header", "-rfE", *planted.tests]  # fmt: skip
    started = time.monotonic()
    try:
        path.write_text(planted.mutant.apply(original))
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout_s)  # fmt: skip
        except subprocess.TimeoutExpired:
            return Outcome(planted, "timeout", time.monotonic() - started)
    finally:
        path.write_text(original)
    seconds = time.monotonic() - started
    if done.returncode == 0:
        return Outcome(planted, "survived", seconds)
    failed = FAILED.search(done.stdout)
    if done.returncode == 1 and failed:
        return Outcome(planted, "killed", seconds, failed.group(1))
    last = (done.stdout.strip().splitlines() or [f"pytest exit status {done.returncode}"])[-1]
    return Outcome(planted, "broken", seconds, last)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    parser.add_argument("files", nargs="*", help="files to mutate (default: all listed)")
    parser.add_argument(
        "--auto",
        type=int,
        default=0,
        metavar="N",
        help="also N generated mutants of the files, drawn at random",
    )
    parser.add_argument("--seed", type=int, default=None, help="the draw's seed (printed)")
    parser.add_argument(
        "--changed",
        action="store_true",
        help="generated mutants only on lines changed against --base",
    )
    parser.add_argument("--base", default="HEAD", help="git revision for --changed")
    parser.add_argument("--no-listed", action="store_true", help="skip targets.toml's mutants")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    parser.add_argument("--list", action="store_true", help="print the mutants; run nothing")
    options = parser.parse_args(argv)  # fmt: skip
    targets = tomllib.loads(TARGETS.read_text())
    files = {str((Path.cwd() / f).resolve().relative_to(ROOT)) for f in options.files} or None
    plan = [] if options.no_listed else listed(targets, files)
    if options.auto:
        seed = options.seed if options.seed is not None else random.randrange(10**6)
        pool = []
        for file in sorted(files or {p.mutant.file for p in plan}):
            candidates = generated(ROOT / file, ROOT)
            if options.changed:
                lines = changed_lines(file, options.base)
                candidates = [m for m in candidates if m.line in lines]
            tests = tests_for(file, targets["tests"])
            if not tests:
                raise SystemExit(f"targets.toml: no tests mapped to {file}")
            pool += [Planted(m, tests) for m in candidates]
        drawn = random.Random(seed).sample(pool, min(options.auto, len(pool)))
        print(f"generated: {len(drawn)} of {len(pool)} mutants, seed {seed} (--seed {seed})")
        plan += sorted(drawn, key=lambda p: (p.mutant.file, p.mutant.start))
    if options.list or not plan:
        for planted in plan:
            mutant = planted.mutant
            print(f"{mutant.file}:{mutant.line}: {mutant.name}: "
                  f"{mutant.old.strip()!r} → {mutant.new.strip()!r}")  # fmt: skip
        return 0 if plan else 5
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        print("exporting the test model once…", flush=True)
        model = export_test_model(Path(scratch) / "xception" / "1")
        for number, planted in enumerate(plan, 1):
            outcome = run(planted, options.timeout, model)
            outcomes.append(outcome)
            where = f"{planted.mutant.file}:{planted.mutant.line}"
            print(f"[{number}/{len(plan)}] {outcome.verdict:8} {outcome.seconds:5.0f}s {where}: "
                  f"{planted.mutant.name}" + (f"  ({outcome.by})" if outcome.by else ""),
                  flush=True)  # fmt: skip
    survivors = [o for o in outcomes if o.verdict == "survived"]
    print(f"\n{len(outcomes) - len(survivors)} killed, {len(survivors)} survived")
    for outcome in survivors:
        mutant = outcome.planted.mutant
        print(f"  survived: {mutant.file}:{mutant.line}: {mutant.name}: "
              f"{mutant.old.strip()!r} → {mutant.new.strip()!r}")  # fmt: skip
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
