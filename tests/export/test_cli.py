"""``xception-export`` as a user runs it: bad arguments give one line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xception-export: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_arch(tmp_path: Path) -> None:
    result = run_cli("--arch", "xceptionn", "--weights", "none", "--out", str(tmp_path / "m/1"))
    assert_one_line_error(result, "--arch 'xceptionn'", "did you mean")


def test_missing_weights_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pth")
    result = run_cli("--weights", missing, "--out", str(tmp_path / "m/1"))
    assert_one_line_error(result, missing, "no such file")


def test_existing_version_needs_force(exported_model: Path) -> None:
    before = (exported_model / "model.onnx").stat().st_mtime_ns
    result = run_cli("--weights", "none", "--out", str(exported_model))
    assert_one_line_error(result, "already holds a model version", "--force")
    assert (exported_model / "model.onnx").stat().st_mtime_ns == before


def test_imagenet_offline_fails_fast_and_names_the_air_gapped_route(tmp_path: Path) -> None:
    # vgg16's weights live on the Hugging Face Hub; point the hub at a closed local port
    # and use an empty cache, so this is "offline" on any machine, with or without internet.
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    started = time.monotonic()
    result = run_cli(
        "--arch", "vgg16", "--weights", "imagenet", "--out", str(tmp_path / "m/1"), env=env
    )
    assert time.monotonic() - started < 60  # fails in seconds (most of it is importing torch)
    assert_one_line_error(result, "--weights imagenet", "--weights PATH", "--weights none")
    assert not (tmp_path / "m").exists()


def test_imagenet_default_arch_offline(tmp_path: Path) -> None:
    # legacy_xception's weights come from a GitHub release URL, which cannot be redirected:
    # this case is only meaningful where github.com is unreachable (CI, these machines).
    import socket

    try:
        socket.create_connection(("github.com", 443), timeout=3).close()
        pytest.skip("github.com is reachable here, so this machine is not offline")
    except OSError:
        pass
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    result = run_cli("--weights", "imagenet", "--out", str(tmp_path / "m/1"), env=env)
    assert_one_line_error(result, "github.com", "--weights PATH")


def test_help_lists_the_flags() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--arch", "--weights", "--out", "--force", "--labels"):
        assert flag in result.stdout


def test_skip_existing_is_a_quick_no_op(exported_model: Path) -> None:
    before = (exported_model / "model.onnx").stat().st_mtime_ns
    result = run_cli("--weights", "imagenet", "--out", str(exported_model), "--skip-existing")
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    assert (exported_model / "model.onnx").stat().st_mtime_ns == before


@pytest.mark.parametrize("out", ["models/xception", "models/xception/v2", "1", "/tmp/x/-bad/1"])
def test_out_must_be_a_name_and_version_folder(out: str) -> None:
    result = run_cli("--weights", "none", "--out", out)
    assert result.returncode == 2
    assert "is not a <name>/<version> folder" in result.stderr and "Traceback" not in result.stderr


def test_deprecated_arch_names_map_quietly_and_lookalikes_suggest_the_default() -> None:
    """``--arch xception`` is timm's deprecated alias of ``legacy_xception``: the export maps
    it (the card records the current name; timm prints no warning); ``--arch exception`` is
    no model, and the suggestions start with the default, not only xception71/65/41."""
    import warnings

    from export.build.model import check_arch, current_arch
    from export.errors import ExportError

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert current_arch("xception") == "legacy_xception"
    assert current_arch("resnet18") == "resnet18"
    with pytest.raises(ExportError) as refused:
        check_arch("exception")
    assert "did you mean legacy_xception, xception71" in str(refused.value)
