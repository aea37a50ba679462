"""Each part of the service's slice of the settings, in the type that part owns.

The core, the repository, the edge and the protocols each declare what they are configured
with (a frozen dataclass whose fields are named after their ``XCEPTION_*`` variables) and
never read :class:`~service.config.settings.Settings`; this module is the one place that
maps the variables onto them. Derived values (thread counts from the cores, sets from
comma lists, bytes from MB) are resolved here, once.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from artifact.runtime import available_cores
from service.config.settings import Settings
from service.core.limits import Admission, Batching, ImageLimits, InferenceLimits
from service.edge.auth import AccessKeys
from service.edge.limits import BodyLimits, ConnectionLimits
from service.edge.server import Listening
from service.protocols.image_sources import UrlPolicy
from service.repository.selection import RepositorySettings
from service.repository.sources import EngineSettings, ModelSource, source_for


def _names(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def inference(settings: Settings) -> InferenceLimits:
    """Admission, batching and image limits: every model version's."""
    return InferenceLimits(
        admission=Admission(
            max_queue=settings.max_queue,
            max_queue_wait_s=settings.max_queue_wait_s,
            max_files=settings.max_files,
            request_timeout_s=settings.request_timeout_s,
        ),
        batching=Batching(settings.max_batch_size, settings.max_batch_delay_ms),
        images=ImageLimits(
            max_pixels=settings.max_pixels,
            max_aspect_ratio=settings.max_aspect_ratio,
            image_formats=frozenset(f.upper() for f in _names(settings.image_formats)),
        ),
    )


def engine(settings: Settings) -> EngineSettings:
    return EngineSettings(
        device=settings.device,
        engine=settings.engine,
        intra_op_threads=settings.ort_threads or available_cores(),
        ort_spinning=settings.ort_spinning,
    )


def repository(settings: Settings) -> RepositorySettings:
    return RepositorySettings(
        policy=settings.policy,
        default_model=settings.default_model,
        poll_s=settings.poll_s,
        decode_workers=settings.decode_threads or available_cores(),
        drain_timeout_s=settings.drain_timeout_s,
    )


def source(settings: Settings) -> ModelSource:
    """Where the models come from: the repository folder, else the single model."""
    return source_for(settings.model_repository, settings.model, engine(settings))


def access(settings: Settings) -> AccessKeys:
    def secret(key: Any) -> str | None:
        return key.get_secret_value() if key is not None else None

    return AccessKeys(secret(settings.api_key), secret(settings.admin_key), settings.model_control)


def body(settings: Settings) -> BodyLimits:
    return BodyLimits(max_upload_mb=settings.max_upload_mb, body_timeout_s=settings.body_timeout_s)


def connections(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        max_header_kb=settings.max_header_kb,
        header_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
        keep_alive_s=settings.keep_alive_s,
        drain_timeout_s=settings.drain_timeout_s,
    )


def listening(settings: Settings) -> Listening:
    return Listening(host=settings.host, port=settings.port, log_level=settings.log_level)


def urls(settings: Settings) -> UrlPolicy:
    """Where ``/v1/embeddings`` may fetch images (host names compare in lower case)."""
    hosts = frozenset(host.lower() for host in _names(settings.url_hosts))
    return UrlPolicy(hosts, body(settings).max_upload_bytes, settings.url_timeout_s)


def listed(settings: Settings) -> dict[str, Any]:
    """The server-wide slices ``/v1/models`` shows beside each version's own (its
    admission, batching and image limits): the threads, and the body and connection limits."""
    threads = {
        "ort_intra_op": engine(settings).intra_op_threads,
        "decode": repository(settings).decode_workers,
    }
    limits = {**asdict(body(settings)), **asdict(connections(settings))}
    return {"threads": threads, "limits": limits}
