"""What ``xception-serve`` says about the environment before it starts: one line per bad
setting, and a warning per ``XCEPTION_*`` variable that no setting reads."""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr, ValidationError

from service.config.settings import ENV_PREFIX, Settings

# XCEPTION_* names no setting reads but that are not typos: the deployment's (docker compose,
# .env.example) and the engines' own switch (XCEPTION_CPU_BF16, artifact.engines.openvino_engine).
DEPLOYMENT_VARIABLES = frozenset(
    ENV_PREFIX + name
    for name in (
        "EXPORT_ARGS", "WEIGHTS_DIR", "DATA_DIR", "MODEL_NAME", "MODEL_VERSION",
        "PUBLISH_PORT", "RUNTIME_IMAGE", "EXPORT_IMAGE", "CPU_BF16",
    )
)  # fmt: skip


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad setting, naming the environment variable and the value given (not
    a key's)."""
    lines = []
    for item in error.errors():
        if not item["loc"]:  # a rule across settings: its message names them
            lines.append(item["msg"].removeprefix("Value error, "))
            continue
        key = ENV_PREFIX + "_".join(str(part) for part in item["loc"]).upper()
        value = item.get("input")
        message = item["msg"].removeprefix("Value error, ")
        field = Settings.model_fields.get(str(item["loc"][0]))
        unset = key not in {name.upper() for name in os.environ}
        if field is not None and value == field.default and unset:
            # The default failed its check: blame no setting the user never set.
            lines.append(f"{key} is not set, and its default fails: {message}")
            continue
        value = str(value) if isinstance(value, Path) else value  # not PosixPath('…')
        secret = field is not None and SecretStr in typing.get_args(field.annotation)
        shown = "" if isinstance(value, dict) or secret else f"={value!r}"  # never a key
        lines.append(f"{key}{shown}: {message}")
    return "; ".join(lines)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``XCEPTION_*`` variable no setting reads, naming the closest known one.

    pydantic-settings ignores unknown variables; a typo (``XCEPTION_MAX_QEUE``) would
    otherwise silently leave the default in force.
    """
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | DEPLOYMENT_VARIABLES
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in known:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a setting and is ignored{hint}")
    return warnings
