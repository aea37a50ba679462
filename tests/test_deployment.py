"""Deployment files, checked statically, in seconds (CI then runs the compose deployment for
real with a private Docker Engine: deploy/compose-check.sh)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
TORCH_PACKAGES = {"torch", "torchvision", "timm", "onnxscript"}


def stages() -> dict[str, list[str]]:
    """Dockerfile lines per stage name (instructions joined across line continuations)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    result: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
        result.setdefault(current, []).append(line.strip())
    return result


def exec_form(lines: list[str], instruction: str) -> list[str]:
    (line,) = [line for line in lines if line.startswith(f"{instruction} ")]
    value = json.loads(line[len(instruction) + 1 :])
    assert isinstance(value, list), f"{instruction} must be exec form"
    return value


def compose(*args: str) -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs Debian's package")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    result = subprocess.run(
        [binary, *args, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("XCEPTION_")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_hadolint_passes_without_ignored_rules() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint ignore" not in (ROOT / "Dockerfile").read_text()


def test_runtime_stage_is_torch_free_non_root_and_probed() -> None:
    runtime = stages()["runtime"]
    text = "\n".join(runtime)
    assert "EXPOSE 8000" in text
    assert re.search(r"^USER (?!root|0)\S+", text, re.MULTILINE)
    assert "HEALTHCHECK" in text and "service.healthcheck" in text
    assert exec_form(runtime, "ENTRYPOINT") == ["xception-serve"]
    assert "requirements/runtime.txt" in text and "[export]" not in text
    for line in runtime:
        if line.startswith("FROM"):
            image = line.split()[1]
            assert ":" in image or image.startswith("${"), f"unpinned base image: {line}"
    base = (ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+", base)


def test_each_image_copies_the_packages_its_commands_import() -> None:
    """A console script's package and the ones it stands on (ARCHITECTURE.md) are copied into
    the image that runs it; the runtime image carries no torch-side code."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    package = {name: target.split(".")[0] for name, target in scripts.items()}
    commands = {
        "runtime": ["xception-serve", "xception-features"],
        "export": ["xception-export", "xception-features"],
    }
    for stage, names in commands.items():
        copied = {line.split()[1] for line in stages()[stage] if line.startswith("COPY ")}
        needed = {package[name] for name in names} | {"artifact"}
        assert needed <= copied, (stage, needed - copied)
    assert "export" not in {line.split()[1] for line in stages()["runtime"] if "COPY" in line}


def test_runtime_dependency_set_has_no_torch() -> None:
    pinned = {
        Requirement(line.split(" ;")[0]).name.lower()
        for line in (ROOT / "requirements" / "runtime.txt").read_text().splitlines()
        if line and not line.startswith(("#", " "))
    }
    assert "onnxruntime-gpu" in pinned and "nvidia-cudnn-cu13" in pinned
    assert "openvino" in pinned  # bf16 models run in the runtime image as they do here
    assert not pinned & TORCH_PACKAGES
    base = [Requirement(r) for r in requires("xception-service") or []]
    runtime = {r.name.lower() for r in base if r.marker is None or "extra" not in str(r.marker)}
    assert not runtime & TORCH_PACKAGES
    assert runtime <= pinned | {"onnxruntime"}  # the lock covers every runtime dependency


def test_service_runs_with_torch_and_openvino_unimportable(exported_model: Path) -> None:
    """The runtime image has no torch; an install without the openvino extra serves fp32."""
    code = f"""
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {sorted(TORCH_PACKAGES | {"openvino"})!r}:
            raise ImportError(f'{{name}} is not installed here')
sys.meta_path.insert(0, NoTorch())
import io, time
from fastapi.testclient import TestClient
from service.app import create_app
from service.config.settings import Settings
settings = Settings(model={str(exported_model)!r}, device='cpu', max_batch_size=2)
with TestClient(create_app(settings)) as client:
    while client.get('/readyz').status_code != 200:
        time.sleep(0.05)
    image = open({str(ROOT / "tests" / "data" / "chelsea.jpg")!r}, 'rb').read()
    response = client.post('/classify', files={{'file': ('cat.jpg', io.BytesIO(image))}})
    assert response.status_code == 200, response.text
print('ok')
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_compose_validates_for_gpu_and_cpu_hosts() -> None:
    gpu = compose("--profile", "gpu")["services"]
    cpu = compose("--profile", "cpu")["services"]
    for export in (gpu["export-gpu"], cpu["export"]):
        assert "models:/models" in str(export["volumes"])
        assert export["build"]["target"] == "export"
    # Fine-tuning in the gpu profile runs on the GPU: the export service reserves one too.
    (export_device,) = gpu["export-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert export_device["driver"] == "nvidia" and "gpu" in export_device["capabilities"]
    assert "deploy" not in cpu["export"]
    api, api_cpu = gpu["api"], cpu["api-cpu"]
    (device,) = api["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "deploy" not in api_cpu
    assert api_cpu["environment"]["XCEPTION_DEVICE"] == "cpu"
    # The compose defaults are the service's tuned per-provider defaults.
    from artifact.runtime import CPU_EP, CUDA_EP
    from service.core.batcher import BATCHING_DEFAULTS

    for service, provider in ((api, CUDA_EP), (api_cpu, CPU_EP)):
        size, delay = BATCHING_DEFAULTS[provider]
        assert int(service["environment"]["XCEPTION_MAX_BATCH_SIZE"]) == size
        assert float(service["environment"]["XCEPTION_MAX_BATCH_DELAY_MS"]) == delay
    for service, export_name in ((api, "export-gpu"), (api_cpu, "export")):
        assert service["build"]["target"] == "runtime"
        condition = service["depends_on"][export_name]["condition"]
        assert condition == "service_completed_successfully"
        assert service["volumes"] == ["models:/models:ro"] or "read_only" in str(service["volumes"])
        assert service["healthcheck"]["test"][-1] == "service.healthcheck"
        assert service["restart"] == "unless-stopped"
        # The volume is the API's model repository; the model the export writes is the default.
        environment = service["environment"]
        assert (
            environment["XCEPTION_MODEL_REPOSITORY"] == "/models"
            and "XCEPTION_MODEL" not in environment
        )
        assert environment["XCEPTION_DEFAULT_MODEL"] == "xception"
        assert float(environment["XCEPTION_POLL_S"]) > 0
        assert {p["target"] for p in service["ports"]} == {8000}


def test_export_command_matches_the_dockerfile_and_the_docs() -> None:
    export = stages()["export"]
    command = exec_form(export, "ENTRYPOINT") + exec_form(export, "CMD")
    compose_file = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    default_args = re.sub(
        r"\$\{(\w+):-(.*?)\}", lambda m: m.group(2), compose_file["x-export"]["command"]
    )
    # ${XCEPTION_EXPORT_ARGS:---weights imagenet} → "--weights imagenet"
    assert ["xception-export", *shlex.split(default_args)] == command
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    assert shlex.join(command) in deployment
    assert "xception-serve" in deployment
    # What CI runs for real (deploy/compose-check.sh), and what only a GPU host checks.
    assert "deploy/compose-check.sh" in deployment
    assert "Not verified here" in deployment


def test_ci_runs_the_compose_commands_the_docs_show() -> None:
    """The compose commands deploy/compose-check.sh runs (with docker-compose v1 or the v2
    plugin) are, word for word, ones docs/deployment.md shows users."""
    script = (ROOT / "deploy" / "compose-check.sh").read_text()
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    run = re.findall(r'"\$\{compose\[@\]\}" (--profile \w+ [^>|&\n]*?)\s*(?:>|\|\||&&|\n)', script)
    shown = {
        " ".join(line.split(" #")[0].split())  # a trailing comment is not part of the command
        for line in re.findall(r"docker compose (.+)", deployment)
    }
    ran = {" ".join(args.replace("\\", " ").split()) for args in run}
    assert {"--profile cpu up -d --build", "--profile cpu stop"} <= ran, ran
    assert ran <= shown, sorted(ran - shown)


def test_compose_builds_on_the_dockerfile_s_base() -> None:
    """The base image compose passes to the build (XCEPTION_PYTHON_IMAGE, for a mirror or the
    CI's stand-in) defaults to the Dockerfile's own."""
    (line,) = [
        ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if "ARG PYTHON_IMAGE" in ln
    ]
    dockerfile_default = line.split("=", 1)[1]
    compose_file = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for anchor in ("x-api", "x-export"):
        arg = compose_file[anchor]["build"]["args"]["PYTHON_IMAGE"]
        assert arg == f"${{XCEPTION_PYTHON_IMAGE:-{dockerfile_default}}}", anchor


def test_image_names_carry_the_project_version() -> None:
    """Compose tags the images it builds with pyproject's version (Kubernetes names them the
    same way, through test_k8s.py's tie to compose)."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    compose_file = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for anchor, name in (("x-api", "xception-service"), ("x-export", "xception-export")):
        assert compose_file[anchor]["image"].endswith(f":-{name}:{version}}}"), anchor


def test_dockerignore_keeps_models_and_venvs_out() -> None:
    rules = (ROOT / ".dockerignore").read_text().splitlines()
    assert rules[rules.index("*")] == "*"  # deny by default
    allowed = [r for r in rules if r.startswith("!")]
    assert not any(name in " ".join(allowed) for name in ("models", ".venv", "tests", "bench"))


def dockerignored(path: str, rules: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last rule matching
    the path or one of its parent folders wins, ``!`` lets it back in."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for rule in rules:
        pattern = rule.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            ignored = not rule.startswith("!")
    return ignored


def test_dockerignore_admits_every_file_the_dockerfile_copies() -> None:
    """A COPY whose files the context leaves out fails the build (CI builds the images with
    deploy/compose-check.sh; this says which file, in seconds)."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for stage, lines in stages().items():
        for line in lines:
            if not line.startswith("COPY ") or "--from" in line:
                continue
            for source in line.split()[1:-1]:
                files = [f for f in tracked if f == source or f.startswith(source + "/")]
                assert files, f"{stage}: COPY {source}: no such file in the repository"
                left_out = [f for f in files if dockerignored(f, rules)]
                assert not left_out, f"{stage}: COPY {source}: .dockerignore leaves out {left_out}"
