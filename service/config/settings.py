"""Settings: every knob is an ``XCEPTION_*`` environment variable, validated at start-up.

One flat :class:`Settings` (the variables' names are the fields'), read and checked here and
nowhere else; each part of the service takes only its slice (``service.config.slices``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from artifact.layout import DEFAULT_MODEL_FOLDER, MODEL_FILE, model_file
from artifact.repository import scan_repository
from service.repository.selection import VersionPolicy

ENV_PREFIX = "XCEPTION_"


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
    # Unset = the provider's tuned default (service.core.batcher.BATCHING_DEFAULTS).
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

    @field_validator("api_key", "admin_key")
    @classmethod
    def _key_a_client_can_send(cls, value: SecretStr | None) -> SecretStr | None:
        # A client's token is read stripped from a header of visible ASCII: a key with a
        # stray space, tab or newline (a quoted .env line) or a non-ASCII letter would start
        # the server and then refuse every request. Refused here, naming the variable.
        key = value.get_secret_value() if value is not None else ""
        if any(not ("!" <= char <= "~") for char in key):
            raise ValueError(
                "the key holds whitespace, a control character or a non-ASCII character: "
                "no Authorization header could carry it; use visible ASCII only "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def policy(self) -> VersionPolicy:
        """Which versions of each model the repository serves."""
        return VersionPolicy.parse(self.version_policy)


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
