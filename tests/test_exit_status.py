"""The exit-status rule every CLI keeps (docs/reference.md, "Exit status"): Ctrl-C is 130 and
one line, never a traceback. (xception-serve's own cases: service/test_runtime.py and the
drain test in service/test_batching.py.)"""

from __future__ import annotations

import importlib.abc
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


def test_ctrl_c_in_xception_features_is_one_line_and_status_130(
    exported_model: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(200):  # far more than it runs before the signal comes
        shutil.copy(DATA / "chelsea.jpg", images / f"{i}.jpg")
    command = [sys.executable, "-m", "bulk.features", str(images), "--model", str(exported_model),
               "--out", str(tmp_path / "f.npy"), "--device", "cpu"]  # fmt: skip
    tool = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert tool.stderr is not None
    # Interrupted once it is running images (its progress bar has started).
    seen = ""
    while "features:" not in seen:
        char = tool.stderr.read(1)
        assert char, f"exited before running images: {seen}"
        seen += char
    tool.send_signal(signal.SIGINT)
    rest = tool.stderr.read()
    assert tool.wait(60) in (130, -signal.SIGINT)  # either is 130 to a shell
    assert (
        "Traceback" not in rest
        and rest.strip().splitlines()[-1] == "xception-features: interrupted"
    )
    assert not (tmp_path / "f.npy").exists()


def _interrupted_import(*_args: object, **_kwargs: object) -> None:
    """What a Ctrl-C inside a native extension's initialisation raises: an ImportError caused
    by the KeyboardInterrupt (onnxruntime's, seen in CI as a traceback and status 1)."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        raise ImportError("initialization failed") from exc


def _interrupted_implicitly(*_args: object, **_kwargs: object) -> None:
    """The same, raised while handling the KeyboardInterrupt without ``from``: Python links
    the two by ``__context__`` only (no ``__cause__``)."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise ImportError("initialization failed")  # noqa: B904 - the implicit chain is the case


def test_was_interrupted_follows_both_chains_and_stops_at_a_loop() -> None:
    from artifact.errors import was_interrupted

    for raiser in (_interrupted_import, _interrupted_implicitly):
        with pytest.raises(ImportError) as raised:
            raiser()
        assert was_interrupted(raised.value), raiser.__name__
    looped = ValueError("a")
    looped.__context__ = ValueError("b")
    looped.__context__.__context__ = looped  # a chain that loops back on itself
    assert not was_interrupted(looped)
    assert not was_interrupted(ImportError("a plain failure"))


class _InterruptedFinder(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, raiser: Callable[..., None]) -> None:
        self.name, self.raiser = name, raiser

    def find_spec(self, fullname: str, *_args: object) -> None:
        if fullname == self.name:
            self.raiser()


@pytest.mark.parametrize(
    "raiser", [_interrupted_import, _interrupted_implicitly], ids=["from", "implicit"]
)
def test_a_ctrl_c_that_surfaces_as_an_import_error_is_still_130(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    raiser: Callable[..., None],
) -> None:
    import export.cli
    import export.pipeline
    import service.cli
    from bulk import ray_job

    monkeypatch.setattr(service.cli, "_prepare", raiser)
    assert service.cli.main([]) == 130
    monkeypatch.setattr(export.pipeline, "export_model", raiser)
    assert export.cli.main(["--weights", "none", "--out", str(tmp_path / "m" / "1")]) == 130
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedFinder("ray", raiser), *sys.meta_path])
    assert ray_job.main([str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path)]) == 130
    said = capsys.readouterr().err.splitlines()
    assert said == [
        "xception-serve: interrupted while starting; nothing was served",
        "xception-export: interrupted; nothing was published",
        "xception-bulk: interrupted",
    ]


def test_a_missing_ray_is_still_named_as_the_missing_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from bulk import ray_job

    monkeypatch.setitem(sys.modules, "ray", None)  # what Python does for a module not there
    assert ray_job.main([str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path)]) == 1
    assert "needs Ray" in capsys.readouterr().err


def test_the_interrupted_line_starts_a_line_of_its_own_after_a_half_closed_bar(
    exported_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Ctrl-C's timing the subprocess test above meets only sometimes: after the bar was
    drawn and closed, before its closing newline (it is no longer open for tqdm.write to
    clear). The message still goes on a line of its own."""
    from bulk import features

    def interrupted_mid_close(*_: object) -> None:
        features.PROGRESS.write("\rfeatures:   0%|          | 0/1 [00:00<?, ?img/s]")
        raise KeyboardInterrupt

    monkeypatch.setattr(features, "extract", interrupted_mid_close)
    argv = [str(DATA), "--model", str(exported_model), "--out", str(tmp_path / "f.npy"),
            "--device", "cpu", "--engine", "onnxruntime"]  # fmt: skip
    assert features.main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "xception-features: interrupted"
