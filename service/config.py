"""Settings: every knob is an ``XCEPTION_*`` environment variable, validated at start-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "XCEPTION_"


def available_cores() -> int:
    """Cores this process may run on (the container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """The service's configuration; defaults are documented in the README."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    model: Path = Field(Path("models/xception/1"), description="model folder or .onnx file")
    device: Literal["auto", "cuda", "cpu"] = "auto"
    # Unset = the provider's tuned default (see service.runtime.BATCHING_DEFAULTS).
    max_batch_size: int | None = Field(None, ge=1, le=1024)
    max_batch_delay_ms: float | None = Field(None, ge=0.0, le=10_000.0)
    max_queue: int = Field(64, ge=1, description="images waiting for inference, all requests")
    request_timeout_s: float = Field(30.0, gt=0.0)
    max_upload_mb: float = Field(20.0, gt=0.0, description="largest request body")
    max_pixels: int = Field(40_000_000, ge=1, description="largest decoded image, width × height")
    max_files: int = Field(16, ge=1, description="files per request")
    api_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # Beyond the contract's list: thread budgets (0 = derive from the cores available).
    ort_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads")
    decode_threads: int = Field(0, ge=0, description="image decode/resize threads")
    ort_spinning: bool = Field(
        False, description="let ORT's idle threads busy-wait (only when it has the cores alone)"
    )

    @field_validator("model")
    @classmethod
    def _model_exists(cls, value: Path) -> Path:
        onnx_file = value / "model.onnx" if value.is_dir() else value
        if not onnx_file.is_file():
            raise ValueError(
                f"no model at {str(value)!r}: expected a folder with model.onnx (see "
                "models/README.md) or an .onnx file; export one with xception-export"
            )
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        # Compose passes XCEPTION_API_KEY="" for "not set"; an empty token must not be a key.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def model_file(self) -> Path:
        """The ``model.onnx`` to load."""
        return self.model / "model.onnx" if self.model.is_dir() else self.model

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def intra_op_threads(self) -> int:
        return self.ort_threads or available_cores()

    @property
    def decode_workers(self) -> int:
        return self.decode_threads or available_cores()


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad setting, naming the environment variable and the value given."""
    lines = []
    for item in error.errors():
        key = ENV_PREFIX + "_".join(str(part) for part in item["loc"]).upper()
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f"={value!r}"
        lines.append(f"{key}{shown}: {item['msg']}")
    return "; ".join(lines)
