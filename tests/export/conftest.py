"""Export-stage fixtures: a generated 3-class image folder and a shared feature cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.export.synthetic import make_dataset


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 images per class (circle/square/triangle), one corrupt JPEG, one stray text file."""
    root = make_dataset(tmp_path_factory.mktemp("data") / "shapes", per_class=30, seed=0)
    (root / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "square" / "README.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bottleneck-feature cache for the session: later fine-tunes reuse the vectors."""
    return tmp_path_factory.mktemp("feature-cache")
