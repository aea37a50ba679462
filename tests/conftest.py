"""Shared fixtures: one real random-weights Xception export per test session.

Exporting takes ~15 s on the 2-core CI machine, so every test that needs a model
shares this one (``--weights none``: the real architecture, random weights).
"""

from __future__ import annotations

from pathlib import Path

import pytest

EXPORT_SEED = 0


def pytest_report_header() -> str:
    """The fuzzers' seed for this run (tests/fuzz/conftest.py), in the header of every run."""
    from tests.fuzz.conftest import SEED

    return f"fuzz seed: {SEED} (replay with FUZZ_SEED={SEED})"


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder ``<tmp>/xception/1`` holding model.onnx + model.json of a random-weights export."""
    import torch

    from export.options import ExportOptions
    from export.pipeline import export_model

    out = tmp_path_factory.mktemp("models") / "xception" / "1"
    torch.manual_seed(EXPORT_SEED)
    export_model(ExportOptions(out=out, arch="legacy_xception", weights="none"))
    return out
