"""Shared fixtures: one real random-weights Xception export per test session.

Exporting takes ~15 s on the 2-core CI machine, so every test that needs a model
shares this one (``--weights none``: the real architecture, random weights).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

EXPORT_SEED = 0


def pytest_report_header() -> str:
    """The fuzzers' seed for this run (tests/fuzz/conftest.py), in the header of every run."""
    from tests.fuzz.conftest import SEED

    return f"fuzz seed: {SEED} (replay with FUZZ_SEED={SEED})"


# A folder holding an export_test_model() export made earlier, used instead of exporting
# again: the mutation runner (tests/mutation) sets it so that each mutant's run costs its
# tests, not an export. CI never sets it.
REUSE_MODEL_VARIABLE = "XCEPTION_TEST_MODEL"


def export_test_model(out: Path) -> Path:
    """A random-weights Xception export (seeded: every one is the same model) into ``out``."""
    import torch

    from export.options import ExportOptions
    from export.pipeline import export_model

    torch.manual_seed(EXPORT_SEED)
    export_model(ExportOptions(out=out, arch="legacy_xception", weights="none"))
    return out


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder ``<tmp>/xception/1`` holding model.onnx + model.json of a random-weights export."""
    if reused := os.environ.get(REUSE_MODEL_VARIABLE):
        return Path(reused)
    return export_test_model(tmp_path_factory.mktemp("models") / "xception" / "1")
