"""Settings: every knob is an ``XCEPTION_*`` environment variable, validated at start-up."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from artifact.layout import DEFAULT_MODEL_FOLDER, MODEL_FILE, model_file
from artifact.repository import scan_repository
from artifact.runtime import available_cores

ENV_PREFIX = "XCEPTION_"
# XCEPTION_* names no setting reads but that are not typos: the deployment's (docker compose,
# .env.example) and the engines' own switch (XCEPTION_CPU_BF16, artifact.engines.openvino_engine).
DEPLOYMENT_VARIABLES = frozenset(
    ENV_PREFIX + name
    for name in (
        "EXPORT_ARGS", "WEIGHTS_DIR", "DATA_DIR", "MODEL_NAME", "MODEL_VERSION",
        "PUBLISH_PORT", "RUNTIME_IMAGE", "EXPORT_IMAGE", "CPU_BF16",
    )
)  # fmt: skip


POLICY = re.compile(r"latest(?::([1-9][0-9]*))?|all")


@dataclass(frozen=True)
class VersionPolicy:
    """``latest`` (the newest), ``latest:N`` (the N newest) or ``all``, as in Triton."""

    newest: int | None  # None: all versions

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """The policy ``text`` names; ValueError saying the accepted forms otherwise."""
        match = POLICY.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a version policy: use latest, latest:N or all")
        if text.strip() == "all":
            return cls(None)
        return cls(int(match.group(1) or 1))

    def select(self, versions: list[str]) -> list[str]:
        """The versions to serve among ``versions`` (digit strings), newest first."""
        ordered = sorted(versions, key=int, reverse=True)
        return ordered if self.newest is None else ordered[: self.newest]

    def __str__(self) -> str:
        if self.newest is None:
            return "all"
        return "latest" if self.newest == 1 else f"latest:{self.newest}"


class Settings(BaseSettings):
    """The service's configuration; defaults are documented in docs/reference.md."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Repository mode: serve every <name>/<version> under this folder instead of one model
    # (before `model`: its check reads this).
    model_repository: Path | None = Field(None, description="folder of <name>/<version>/")
    model: Path = Field(DEFAULT_MODEL_FOLDER, description="model folder or .onnx file")
    version_policy: str = Field("latest", description="latest | latest:N | all, per model")
    default_model: str | None = Field(None, description="model for requests that name none")
    # Repository mode: rescan every this many seconds for new and removed versions (0: never;
    # POST /v2/repository/index and .../load rescan on demand).
    poll_s: float = Field(0.0, ge=0.0)
    device: Literal["auto", "cuda", "cpu"] = "auto"
    # auto: the engine each model's card names (OpenVINO for bf16, else ONNX Runtime).
    engine: Literal["auto", "onnxruntime", "openvino"] = "auto"
    # Unset = the provider's tuned default (see service.core.batcher.BATCHING_DEFAULTS).
    max_batch_size: int | None = Field(None, ge=1, le=1024)
    max_batch_delay_ms: float | None = Field(None, ge=0.0, le=10_000.0)
    max_queue: int = Field(64, ge=1, description="images queued or arriving, per model version")
    request_timeout_s: float = Field(30.0, gt=0.0)
    max_upload_mb: float = Field(20.0, gt=0.0, description="largest request body")
    max_pixels: int = Field(40_000_000, ge=1, description="largest decoded image, width × height")
    max_files: int = Field(16, ge=1, description="files per request")
    # The work an accepted image causes is bounded by max_pixels (decode) and by this ratio
    # (the crop policy scales the shorter side to ~333 px: a 1×2000 image would become
    # 333×666,000 pixels before the crop).
    max_aspect_ratio: float = Field(20.0, ge=1.0, description="longer side ÷ shorter side")
    # The image formats accepted (Pillow's names): what phones and browsers produce, and TIFF.
    # Others (ICO, TGA, PCX, EPS, …) are refused from the header with 415.
    image_formats: str = Field("JPEG,PNG,WEBP,GIF,BMP,TIFF,MPO,AVIF", min_length=1)
    # Admission: a request is refused (503, before its body is read) when the images
    # already waiting would take longer than this to run, at the measured time per image.
    max_queue_wait_s: float = Field(1.5, gt=0.0)
    # Niceness added to the HTTP event loop (not to the model's or the decode threads). 0:
    # with Retry-After enforced (edge/pacing.py) a storm no longer costs the loop much, and
    # a lowered loop answers refusals late (docs/reliability.md); raise it to favour
    # inference over HTTP when clients that do not pace themselves share a small machine.
    http_niceness: int = Field(0, ge=0, le=19)
    # The connection edge (uvicorn): slow or oversized requests are cut off.
    header_timeout_s: float = Field(10.0, gt=0.0, description="to receive a request's headers")
    body_timeout_s: float = Field(60.0, gt=0.0, description="to receive a request's body")
    max_header_kb: int = Field(64, ge=1, le=1024, description="request line + headers")
    max_connections: int = Field(512, ge=1, description="open connections; past it, 503")
    keep_alive_s: int = Field(5, ge=1, description="idle keep-alive connection lifetime")
    # SIGTERM: stop accepting, cut off uploads still arriving, finish the rest within this
    # (below Kubernetes' default 30 s grace period).
    drain_timeout_s: float = Field(20.0, gt=0.0)
    # /v1/embeddings may fetch image URLs from these hosts only (comma-separated; empty: never).
    url_hosts: str = Field("", description="hosts image URLs may be fetched from")
    url_timeout_s: float = Field(5.0, gt=0.0, description="to fetch one image URL")
    api_key: SecretStr | None = None
    # Repository control (load, unload: what is served): off unless "explicit", as Triton's
    # model control mode; then every control call needs this admin key (not the API key).
    model_control: Literal["none", "explicit"] = "none"
    admin_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # json: one JSON object per line (with request_id), for log collectors.
    log_format: Literal["text", "json"] = "text"
    # Beyond the contract's list: thread budgets (0 = derive from the cores available).
    ort_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads")
    decode_threads: int = Field(0, ge=0, description="image decode/resize threads")
    ort_spinning: bool = Field(
        False, description="let ORT's idle threads busy-wait (only when it has the cores alone)"
    )

    @field_validator("model")
    @classmethod
    def _model_exists(cls, value: Path, info: ValidationInfo) -> Path:
        # A repository given (or given badly, and reported as such): no single model needed.
        single = "model_repository" in info.data and info.data["model_repository"] is None
        if single and not model_file(value).is_file():
            raise ValueError(f"no model at {str(value)!r}: {_where_the_model_is(value)}")
        return value

    @field_validator("model_repository", "default_model", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # XCEPTION_MODEL_REPOSITORY="" turns the image's default off (XCEPTION_MODEL instead).
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("model_repository")
    @classmethod
    def _repository_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{str(value)!r} is not a folder")
        return value

    @model_validator(mode="after")
    def _model_or_repository(self) -> Settings:
        if self.model_repository is not None and "model" in self.model_fields_set:
            raise ValueError(
                "XCEPTION_MODEL and XCEPTION_MODEL_REPOSITORY are both set: set one (a single "
                "model folder, or the folder of <name>/<version> folders)"
            )
        return self

    @model_validator(mode="after")
    def _control_has_its_own_key(self) -> Settings:
        if self.model_control == "explicit" and self.admin_key is None:
            raise ValueError(
                "XCEPTION_MODEL_CONTROL=explicit needs XCEPTION_ADMIN_KEY: anyone who can reach "
                "the port could otherwise unload the models"
            )
        admin, api = self.admin_key, self.api_key
        if (
            admin is not None
            and api is not None
            and admin.get_secret_value() == api.get_secret_value()
        ):
            raise ValueError(
                "XCEPTION_ADMIN_KEY equals XCEPTION_API_KEY: give control its own key, so that "
                "every client with the inference key cannot also unload models"
            )
        return self

    @field_validator("version_policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        VersionPolicy.parse(value)  # raises with the accepted forms
        return value.strip()

    @field_validator("api_key", "admin_key", mode="before")
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
        """The ``model.onnx`` to load (single-model mode)."""
        return model_file(self.model)

    @property
    def policy(self) -> VersionPolicy:
        """Which versions of each model the repository serves."""
        return VersionPolicy.parse(self.version_policy)

    @property
    def image_format_set(self) -> frozenset[str]:
        """``XCEPTION_IMAGE_FORMATS`` as Pillow format names."""
        return frozenset(f.strip().upper() for f in self.image_formats.split(",") if f.strip())

    @property
    def url_host_set(self) -> frozenset[str]:
        """``XCEPTION_URL_HOSTS`` as lower-case host names."""
        return frozenset(h.strip().lower() for h in self.url_hosts.split(",") if h.strip())

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_header_bytes(self) -> int:
        return self.max_header_kb * 1024

    @property
    def intra_op_threads(self) -> int:
        return self.ort_threads or available_cores()

    @property
    def decode_workers(self) -> int:
        return self.decode_threads or available_cores()


def _where_the_model_is(value: Path) -> str:
    """What to do instead, for an ``XCEPTION_MODEL`` that holds no model: a model's folder of
    versions, or a repository of models, is named as such."""
    try:
        versions = list(scan_repository(value.parent).get(value.name, {}))
        repository = bool(scan_repository(value))
    except OSError:  # a folder we may not read: nothing more to say about it
        versions, repository = [], False
    if versions:
        return (
            f"it is a model's folder of versions ({', '.join(versions)}): set XCEPTION_MODEL="
            f"{value / versions[-1]} for one, or XCEPTION_MODEL_REPOSITORY={value.parent} to "
            "serve every model there"
        )
    if repository:
        return f"it is a model repository: set XCEPTION_MODEL_REPOSITORY={value} instead"
    return (
        f"expected a folder with {MODEL_FILE} (see models/README.md) or an .onnx file; export "
        "one with xception-export (no network: xception-export --weights none)"
    )


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad setting, naming the environment variable and the value given."""
    lines = []
    for item in error.errors():
        if not item["loc"]:  # a rule across settings: its message names them
            lines.append(item["msg"].removeprefix("Value error, "))
            continue
        key = ENV_PREFIX + "_".join(str(part) for part in item["loc"]).upper()
        value = item.get("input")
        message = item["msg"].removeprefix("Value error, ")
        field = Settings.model_fields.get(str(item["loc"][0]))
        unset = key not in {name.upper() for name in os.environ}
        if field is not None and value == field.default and unset:
            # The default failed its check: blame no setting the user never set.
            lines.append(f"{key} is not set, and its default fails: {message}")
            continue
        value = str(value) if isinstance(value, Path) else value  # not PosixPath('…')
        shown = "" if isinstance(value, dict) else f"={value!r}"
        lines.append(f"{key}{shown}: {message}")
    return "; ".join(lines)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``XCEPTION_*`` variable no setting reads, naming the closest known one.

    pydantic-settings ignores unknown variables; a typo (``XCEPTION_MAX_QEUE``) would
    otherwise silently leave the default in force.
    """
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | DEPLOYMENT_VARIABLES
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in known:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a setting and is ignored{hint}")
    return warnings
