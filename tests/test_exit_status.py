"""The exit-status rule every CLI keeps (docs/reference.md, "Exit status"): Ctrl-C is 130 and
one line, never a traceback. (xception-serve's own cases: service/test_runtime.py and the
drain test in service/test_batching.py; xception-export's: export/test_cli.py.)"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

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
