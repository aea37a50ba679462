"""The README's set-up commands stay true: CI runs the README's test command verbatim."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert "xception-export" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def test_docs_name_every_setting() -> None:
    """The in-repo reference and the README's tables list every setting the service reads
    (a clone has no other contract to read)."""
    from service.config import ENV_PREFIX, Settings

    reference = (ROOT / "docs" / "reference.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "docs/reference.md" in readme and "../shared" not in readme
    for name in Settings.model_fields:
        variable = f"`{ENV_PREFIX}{name.upper()}`"
        assert variable in reference, variable
        assert f"| {variable} |" in readme, variable


def test_docs_error_table_is_the_registry() -> None:
    """docs/reference.md's error table is the registry's, row for row (regenerate it with
    ``python -m service.errors``)."""
    from service.errors import markdown_table

    reference = (ROOT / "docs" / "reference.md").read_text()
    assert markdown_table() in reference, "run: python -m service.errors"


def test_error_codes_are_made_only_in_the_registry() -> None:
    """No module but service/errors.py makes an ErrorCode or spells a status with a code:
    everything else names a registry entry."""
    makers = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        if path == ROOT / "service" / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ErrorCode":
                makers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not makers, makers


def test_docs_list_every_model_card_field() -> None:
    """The artifact contract's card field list names every field the card has."""
    from artifact.card import ModelCard

    reference = (ROOT / "docs" / "reference.md").read_text()
    listing = reference.split("the same model card, readable:", 1)[1].split("\n\n", 1)[0]
    missing = [name for name in ModelCard.model_fields if name not in listing]
    assert not missing, missing
