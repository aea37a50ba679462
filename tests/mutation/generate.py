"""Generated mutants: the simple operator changes found in a Python file, by position.

Positions come from :mod:`ast` and each mutant replaces one source segment, so the rest of
the file keeps its formatting (and its line numbers, for ``--changed``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SWAPPED_COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">", ast.Eq: "!=", ast.NotEq: "==",
    ast.In: "not in", ast.NotIn: "in", ast.Is: "is not", ast.IsNot: "is",
}  # fmt: skip
SWAPPED_BOOLEANS = {ast.And: " or ", ast.Or: " and "}


@dataclass(frozen=True)
class Mutant:
    """One bug: replace ``old`` (the text at ``line``:``start``–``end_line``:``end``) by ``new``."""

    file: str
    line: int
    name: str
    old: str
    new: str
    start: tuple[int, int]  # (line, column in characters), 1-based line
    end: tuple[int, int]

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        offsets = [0]
        for text in lines:
            offsets.append(offsets[-1] + len(text))
        begin = offsets[self.start[0] - 1] + self.start[1]
        finish = offsets[self.end[0] - 1] + self.end[1]
        assert source[begin:finish] == self.old, (self, source[begin:finish])
        return source[:begin] + self.new + source[finish:]


def _column(lines: list[str], line: int, byte_offset: int) -> int:
    """ast's columns count UTF-8 bytes; ours count characters."""
    return len(lines[line - 1].encode()[:byte_offset].decode())


def generated(path: Path, root: Path) -> list[Mutant]:
    """Every generated mutant of ``path`` (relative names against ``root``)."""
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    name = str(path.resolve().relative_to(root))
    found: list[Mutant] = []

    def segment(node: ast.AST) -> tuple[tuple[int, int], tuple[int, int], str]:
        start = (node.lineno, _column(lines, node.lineno, node.col_offset))  # type: ignore[attr-defined]
        end_line = node.end_lineno  # type: ignore[attr-defined]
        end = (end_line, _column(lines, end_line, node.end_col_offset))  # type: ignore[attr-defined]
        return start, end, ast.get_source_segment(source, node) or ""

    def add(node: ast.AST, what: str, new: str) -> None:
        start, end, old = segment(node)
        if old and old != new:
            found.append(Mutant(name, start[0], what, old, new, start, end))

    tree = ast.parse(source)
    docstrings = {
        id(body[0].value)
        for owner in ast.walk(tree)
        if isinstance(owner, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and (body := owner.body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            swapped = SWAPPED_COMPARISONS.get(type(node.ops[0]))
            if swapped:
                left = ast.get_source_segment(source, node.left)
                right = ast.get_source_segment(source, node.comparators[0])
                add(node, f"comparison → {swapped}", f"{left} {swapped} {right}")
        elif isinstance(node, ast.BoolOp):
            parts = [ast.get_source_segment(source, value) or "" for value in node.values]
            joined = SWAPPED_BOOLEANS[type(node.op)].join(f"({p})" for p in parts)
            add(node, f"boolean → {SWAPPED_BOOLEANS[type(node.op)].strip()}", joined)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            add(node, "not dropped", f"({ast.get_source_segment(source, node.operand)})")
        elif isinstance(node, ast.Constant) and id(node) not in docstrings:
            if isinstance(node.value, bool):
                add(node, "boolean constant flipped", str(not node.value))
            elif isinstance(node.value, int | float):
                add(node, "number + 1", repr(node.value + 1))
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call | ast.Await)
            and node.lineno == node.end_lineno
        ):
            add(node, "call removed", "pass")
    return sorted(found, key=lambda m: (m.start, m.name))
