"""The README's set-up commands stay true: CI runs the README's test command verbatim."""

from __future__ import annotations

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


def test_docs_name_every_setting_and_error_code() -> None:
    """The in-repo reference and the README's tables list every setting the service reads and
    every error code it can answer with (a clone has no other contract to read)."""
    import service.errors as errors
    from service.config import ENV_PREFIX, Settings

    reference = (ROOT / "docs" / "reference.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "docs/reference.md" in readme and "../shared" not in readme
    for name in Settings.model_fields:
        variable = f"`{ENV_PREFIX}{name.upper()}`"
        assert variable in reference, variable
        assert f"| {variable} |" in readme, variable
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ServiceError)
    }
    # Answers written outside the ServiceError classes: the HTTP protocol, the guards, handlers.
    codes |= {"too_many_connections", "headers_too_large", "not_found", "method_not_allowed"}
    codes |= {"http_error", "overloaded", "not_ready", "shutting_down", "request_timeout"}
    for code in codes:
        assert f"`{code}`" in reference, code
