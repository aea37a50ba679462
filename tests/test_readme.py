"""The README is a front page whose commands stay true (CI runs its test command verbatim);
the manual is in docs/, one link away, with the reference's tables checked against the code."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def bash_blocks(text: str) -> list[list[str]]:
    """The commands of each ```bash block (comments and blank lines left out)."""
    blocks = [part.split("```", 1)[0] for part in text.split("```bash\n")[1:]]
    return [[ln for ln in b.splitlines() if ln and not ln.startswith("#")] for b in blocks]


def readme_commands() -> list[str]:
    return bash_blocks((ROOT / "README.md").read_text())[0]


def test_readme_opens_with_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert "xception-export" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def _exports(command: str) -> list[list[str]]:
    """The xception-export invocations in a one-line shell command, as argv lists."""
    steps = [shlex.split(step) for step in command.split("&&")]
    return [step[1:] for step in steps if step and step[0].endswith("xception-export")]


def test_the_quick_starts_export_what_xception_serve_serves_by_default() -> None:
    """Online and offline, the README's main job exports to the folder xception-serve serves
    with nothing set, then serves it; the offline one needs no download (--weights none)."""
    from export.cli import build_parser
    from service.config.settings import Settings

    blocks = bash_blocks((ROOT / "README.md").read_text())
    online, offline = blocks[0][0], blocks[1][0]
    served = Settings.model_fields["model"].default
    for command, weights in ((online, "imagenet"), (offline, "none")):
        (argv,) = _exports(command)
        args = build_parser().parse_args(argv)
        assert (args.weights, args.out) == (weights, served), command
        assert command.rstrip().endswith("xception-serve"), command


def test_every_doc_page_is_one_link_from_the_readme_and_every_link_resolves() -> None:
    """Relative links land on a file that exists (and a heading that exists, for #anchors);
    no link leaves the repository: a clone is all a user has."""
    readme = ROOT / "README.md"
    linked = {(readme.parent / t.split("#")[0]).resolve() for t in LINK.findall(readme.read_text())}
    assert set(PAGES) <= linked, sorted(p.name for p in set(PAGES) - linked)
    broken = []
    for page in [readme, *PAGES]:
        for target in LINK.findall(page.read_text()):
            path, _, anchor = target.partition("#")
            if "://" in target or target.startswith("mailto:"):
                broken.append(f"{page.name}: {target} leaves the repository")
                continue
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and anchor not in _anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_the_readme_is_a_front_page_and_copies_no_table() -> None:
    """The manual lives in docs/: the README stays short, and the settings table is in one
    place (the reference), not copied by hand into another page."""
    from service.config.settings import ENV_PREFIX

    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 100
    row = re.compile(rf"^\| `({ENV_PREFIX}\w+)` \|", flags=re.MULTILINE)
    copies = [p.name for p in [ROOT / "README.md", *PAGES] if row.search(p.read_text())]
    assert copies == ["reference.md"], copies


def test_every_cli_flag_is_documented_on_its_page() -> None:
    """Each flag the CLIs accept is explained on the page for that job (the parsers are built
    from code: export/options.py, bulk/)."""
    from bulk.features import build_parser as features_parser
    from bulk.ray_job import build_parser as bulk_parser
    from export.cli import build_parser as export_parser

    missing = []
    for parser, page in ((export_parser(), "export.md"), (features_parser(), "export.md"),
                         (bulk_parser(), "deployment.md")):  # fmt: skip
        text = (ROOT / "docs" / page).read_text()
        for action in parser._actions:
            for flag in action.option_strings:
                documented = re.search(rf"{re.escape(flag)}(?![\w-])", text)
                if flag.startswith("--") and flag != "--help" and not documented:
                    missing.append(f"{parser.prog} {flag} ({page})")
    assert not missing, missing


def _settings_table() -> dict[str, str]:
    """docs/reference.md's settings table: variable → its default column."""
    reference = (ROOT / "docs" / "reference.md").read_text()
    section = reference.split("## Settings (contract)", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| (.*?) \|", section, flags=re.MULTILINE))


def test_docs_name_every_setting_with_its_default() -> None:
    """The reference's table lists every setting the service reads, and a default it shows
    as a plain value is the code's (a clone has no other contract to read)."""
    from service.config.settings import ENV_PREFIX, Settings

    table = _settings_table()
    wrong = []
    for name, field in Settings.model_fields.items():
        variable = f"{ENV_PREFIX}{name.upper()}"
        assert variable in table, variable
        shown, default = table[variable].strip("`"), field.default
        if default is None:  # unset; or a per-provider default, spelt out in the table
            continue
        value = default.get_secret_value() if hasattr(default, "get_secret_value") else default
        plain = str(value).lower() if isinstance(value, bool) else str(value)
        spellings = {plain, plain.removesuffix(".0")} if plain else {"empty"}
        if shown.split(" ")[0] not in spellings:
            wrong.append(f"{variable}: docs say {shown}, code says {plain!r}")
    assert not wrong, wrong


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
