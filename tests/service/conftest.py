"""Service fixtures: the real app over the exported random-weights model, real images."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.loadgen import ServiceProcess
from service.app import create_app
from service.config.settings import Settings
from service.core.inference import InferenceService
from service.repository.repository import ModelRepository

DATA = Path(__file__).resolve().parents[1] / "data"


def image_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


def make_settings(model: Path | None, **overrides: Any) -> Settings:
    """Test settings: CPU, small batches (quick warm-up), ONNX Runtime forced (no load-time
    engine trial: a few seconds per app; the shared ``client`` and tests/service/
    test_engine_setting.py run the default, ``auto``), everything else as given (``model``
    None: repository mode, ``model_repository=`` among the overrides)."""
    values: dict[str, Any] = {
        "device": "cpu",
        "engine": "onnxruntime",
        "max_batch_size": 4,
        "max_batch_delay_ms": 20,
        "ort_threads": 2,
        "decode_threads": 2,
    }
    if model is not None:
        values["model"] = model
    values.update(overrides)
    return Settings(**values)


def wait_ready(client: TestClient, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "service did not become ready"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def client(exported_model: Path) -> Iterator[TestClient]:
    """A ready app with default limits and the default engine choice (``auto``: measured at
    load); shared: tests must not change its state."""
    settings = make_settings(exported_model, max_files=8, engine="auto")
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        yield test_client


def served(client: TestClient) -> InferenceService:
    """The service of the default model's newest ready version in ``client``'s app."""
    repository: ModelRepository = client.app.state.repository  # type: ignore[attr-defined]
    service = repository.resolve(None, None).inference
    assert service is not None
    return service


def files(*named: tuple[str, bytes]) -> list[tuple[str, tuple[str, io.BytesIO, str]]]:
    """httpx multipart ``files=`` for several parts all named ``file``."""
    return [("file", (name, io.BytesIO(data), "application/octet-stream")) for name, data in named]


@contextmanager
def live_service(model: Path | None, settings: Mapping[str, object]) -> Iterator[ServiceProcess]:
    """An ``xception-serve`` process on a free loopback port, warm; stopped afterwards
    (``model`` None: ``settings`` name a ``model_repository``)."""
    live = ServiceProcess(model, settings)
    try:
        live.wait_ready()
        yield live
    finally:
        live.stop()


def export_resnet18(out: Path, seed: int) -> Path:
    """A random-weights ResNet-18 published at ``out`` (``<name>/<version>``) by the exporter."""
    import torch

    from export.options import ExportOptions
    from export.pipeline import export_model

    torch.manual_seed(seed)
    export_model(ExportOptions(out=out, arch="resnet18", weights="none"))
    return out


@pytest.fixture(scope="session")
def resnet18_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_resnet18(tmp_path_factory.mktemp("store") / "resnet18" / "1", seed=1)


def publish(source: Path, repository: Path, name: str, version: str) -> Path:
    """Copy a version folder in atomically, as xception-export does (hidden work folder,
    then one rename), hard-linking the big file."""
    target = repository / name / version
    work = target.parent / f".{version}.partial-test"
    work.mkdir(parents=True)
    for item in source.iterdir():
        os.link(item, work / item.name)
    work.rename(target)
    return target
