"""Start-up: provider choice without CUDA noise, settings validation, model loading errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from artifact.errors import ModelLoadError
from artifact.runtime import CPU_EP, ModelRuntime, cuda_device_count
from bench.loadgen import free_port
from service.config.startup import unknown_variables

NO_GPU = cuda_device_count()[0] == 0


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.mark.skipif(not NO_GPU, reason="checks the CPU-host path")
def test_auto_on_a_cpu_host_picks_cpu_quietly(exported_model: Path) -> None:
    code = (
        "import logging; logging.basicConfig(level='INFO')\n"
        "from artifact.runtime import ModelRuntime\n"
        f"print(ModelRuntime({str(exported_model / 'model.onnx')!r}, 'auto', "
        "engine='onnxruntime').provider)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == CPU_EP
    assert "CUDA not available" in result.stderr  # one calm line says why
    assert "Failed to load library" not in result.stderr  # and no ORT CUDA error spew
    assert "[E:onnxruntime" not in result.stderr


@pytest.mark.skipif(not NO_GPU, reason="checks the CPU-host path")
def test_cuda_required_but_absent_fails_loudly(exported_model: Path) -> None:
    with pytest.raises(ModelLoadError, match="XCEPTION_DEVICE=cuda"):
        ModelRuntime(exported_model / "model.onnx", "cuda")


def test_file_without_card_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "plain.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="export it with xception-export"):
        ModelRuntime(path, "cpu")


def test_serve_rejects_bad_settings_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "XCEPTION_MODEL": str(tmp_path / "missing"),
            "XCEPTION_MAX_BATCH_SIZE": "0",
            "XCEPTION_DEVICE": "tpu",
        },
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    for fragment in ("XCEPTION_MODEL=", "XCEPTION_MAX_BATCH_SIZE='0'", "XCEPTION_DEVICE='tpu'"):
        assert fragment in lines[0]


def test_service_does_not_import_torch(exported_model: Path) -> None:
    code = (
        "import sys\n"
        "from service.app import create_app\n"
        "from service.config.settings import Settings\n"
        f"create_app(Settings(model={str(exported_model)!r}))\n"
        "assert 'torch' not in sys.modules, 'service imported torch'\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_empty_api_key_means_no_key(exported_model: Path) -> None:
    # docker compose passes XCEPTION_API_KEY="" when the variable is not set.
    from service.config.settings import Settings

    assert Settings(model=exported_model, api_key="").api_key is None
    assert Settings(model=exported_model, api_key=" ").api_key is None
    key = Settings(model=exported_model, api_key="s3cret").api_key
    assert key is not None and key.get_secret_value() == "s3cret"


def serve_once(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XCEPTION_PORT": "1", "XCEPTION_LOG_LEVEL": "warning", **env},
    )


def test_non_onnx_model_file_is_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a protobuf")
    result = serve_once(XCEPTION_MODEL=str(fake), XCEPTION_DEVICE="cpu")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("xception-serve: cannot load") and str(fake) in lines[0]


@pytest.mark.skipif(not NO_GPU, reason="checks the CPU-host path")
def test_cuda_without_a_gpu_is_one_line(exported_model: Path) -> None:
    result = serve_once(XCEPTION_MODEL=str(exported_model), XCEPTION_DEVICE="cuda")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "XCEPTION_DEVICE=cuda" in lines[0]


def test_misspelled_setting_is_named_with_the_closest_one() -> None:
    warnings = unknown_variables(
        {
            "XCEPTION_MAX_QEUE": "8",
            "xception_max_queue": "8",
            "XCEPTION_EXPORT_ARGS": "x",
            "XCEPTION_CPU_BF16": "off",  # read by the OpenVINO engine, not a setting
            "PATH": "/",
        }
    )
    assert warnings == [
        "XCEPTION_MAX_QEUE is not a setting and is ignored; did you mean XCEPTION_MAX_QUEUE?"
    ]
    assert "did you mean" not in unknown_variables({"XCEPTION_ZZZZZZZZZ": "1"})[0]


def test_serve_refuses_an_untested_uvicorn_in_one_line(
    monkeypatch: pytest.MonkeyPatch, exported_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The edge protocol subclasses uvicorn internals: another minor version is refused at
    start-up (exit 2, one line naming the version to install), never run half-working."""
    import uvicorn

    from service.cli import main
    from service.edge.protocol import TESTED_UVICORN, check_uvicorn

    assert check_uvicorn() is None  # what CI installs is what it tests
    monkeypatch.setenv("XCEPTION_MODEL", str(exported_model))
    major, minor = TESTED_UVICORN
    monkeypatch.setattr(uvicorn, "__version__", f"{major}.{minor + 1}.0")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"uvicorn {major}.{minor + 1}.0 is installed" in err
    assert f"uvicorn[standard]=={major}.{minor}.*" in err


def test_pyproject_admits_only_the_tested_uvicorn() -> None:
    import tomllib

    from service.edge.protocol import TESTED_UVICORN

    major, minor = TESTED_UVICORN
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    wanted = f"uvicorn[standard]>={major}.{minor},<{major}.{minor + 1}"
    assert wanted in project["project"]["dependencies"]


def test_a_model_that_cannot_load_is_what_readiness_says(tmp_path: Path) -> None:
    """The app without the CLI's pre-check (embedded, or in tests): a single model that does
    not load keeps /readyz at 503 naming the file, never 'loading' for ever."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config.settings import Settings

    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a protobuf")
    with TestClient(create_app(Settings(model=fake, device="cpu"))) as app:
        deadline = time.monotonic() + 30
        while "cannot be read" not in (answer := app.get("/readyz")).text:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.05)
        assert answer.status_code == 503 and str(fake) in answer.json()["error"]["message"]


# Each start-up step Ctrl-C is tested in, and the stderr line that says start-up has reached it
# (-X importtime writes a line as each module finishes importing; artifact.runtime says
# "loading …" before it loads).
START_UP_STEPS = {
    "imports": "| service.config",  # then service.app's imports: FastAPI, ONNX Runtime, OpenVINO
    "model-load": "model.onnx (legacy_xception, fp32): device cpu, engine auto",  # then the
    # sessions and the engine trial (~4 s)
}


@pytest.mark.parametrize("step", sorted(START_UP_STEPS))
def test_ctrl_c_while_starting_is_one_line_and_status_130(exported_model: Path, step: str) -> None:
    """Ctrl-C during the imports and during the model load: no traceback, status 130. The
    signal is sent once stderr shows start-up at that step, not after a fixed sleep; the port
    is valid (with XCEPTION_PORT=0 a late signal met "invalid settings" and exit 2, issue 32)."""
    env = {**os.environ, "XCEPTION_MODEL": str(exported_model), "XCEPTION_PORT": str(free_port()),
           "XCEPTION_DEVICE": "cpu", "XCEPTION_ENGINE": "auto"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "service"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stderr is not None
    seen: list[str] = []
    watchdog = threading.Timer(60, server.kill)  # a marker never seen must not hang the run
    watchdog.start()
    try:
        while START_UP_STEPS[step] not in (line := server.stderr.readline()):
            assert line, f"ended before the {step} step: {seen[-5:]}"
            seen.append(line)
    finally:
        watchdog.cancel()
    server.send_signal(signal.SIGINT)
    _, rest = server.communicate(timeout=60)
    said = [line for line in rest.splitlines() if not line.startswith("import time:")]
    # 130, or killed by SIGINT, which a shell also reports as 130: CPython ends that way when
    # the KeyboardInterrupt went through code run by PyRun_* inside an import, even if caught.
    assert server.returncode in (130, -signal.SIGINT), rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert said[-1] == "xception-serve: interrupted while starting; nothing was served", said


def test_a_random_weights_model_says_so_when_loaded(
    exported_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The shared test model was exported with ``--weights none``: loading it warns (at the
    service's default log level too) that its answers mean nothing."""
    with caplog.at_level("WARNING", logger="artifact.runtime"):
        ModelRuntime(exported_model / "model.onnx", "cpu")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("random weights" in m and "mean nothing" in m for m in warned), warned


def test_a_missing_model_is_explained_by_what_is_there(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing set and nothing exported: the default is blamed, not a variable the user never
    set (and no ``PosixPath(…)``); a model's folder of versions, or a repository, pointed at
    as one model: the setting that fits is named, with its value."""
    from pydantic import ValidationError

    from service.config.settings import Settings
    from service.config.startup import describe_validation_error

    def complaint() -> str:
        with pytest.raises(ValidationError) as refused:
            Settings()
        return describe_validation_error(refused.value)

    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.upper().startswith("XCEPTION_")]:
        monkeypatch.delenv(name)
    said = complaint()
    assert said.startswith("XCEPTION_MODEL is not set, and its default fails: no model at")
    assert "PosixPath" not in said and "--weights none" in said
    repository = tmp_path / "models"
    (repository / "xception").mkdir(parents=True)
    (repository / "xception" / "7").symlink_to(exported_model)
    monkeypatch.setenv("XCEPTION_MODEL", str(repository / "xception"))
    said = complaint()
    assert f"XCEPTION_MODEL='{repository / 'xception'}'" in said
    assert f"XCEPTION_MODEL={repository / 'xception' / '7'}" in said
    assert f"XCEPTION_MODEL_REPOSITORY={repository} " in said
    monkeypatch.setenv("XCEPTION_MODEL", str(repository))
    assert f"it is a model repository: set XCEPTION_MODEL_REPOSITORY={repository}" in complaint()


@pytest.mark.parametrize(
    ("variable", "key"),
    [
        ("XCEPTION_API_KEY", " s3cr3t-k3y "),
        ("XCEPTION_ADMIN_KEY", "adm1n-k3y\t"),
        ("XCEPTION_API_KEY", "clé-s3cr3t"),
    ],
)
def test_a_key_no_client_could_send_refuses_to_start(
    exported_model: Path, variable: str, key: str
) -> None:
    """A key with stray whitespace started the server, and then no Authorization header
    matched it (the server strips the client's token, not its own)."""
    env = {
        "XCEPTION_MODEL_CONTROL": "explicit",
        "XCEPTION_API_KEY": "other",
        "XCEPTION_ADMIN_KEY": "adm",
    }
    result = serve_once(XCEPTION_MODEL=str(exported_model), **{**env, variable: key})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and "whitespace" in lines[0], lines
    assert key.strip() not in lines[0]  # the key itself never reaches a log line
