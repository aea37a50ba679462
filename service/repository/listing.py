"""What the server says about its models: ``GET /v1/models`` (everything, with each loaded
version's card, runtime and counters) and ``POST /v2/repository/index`` (Triton's shape)."""

from __future__ import annotations

from typing import Any

from service.config import Settings
from service.core.inference import InferenceService
from service.errors import ServiceError
from service.repository.repository import ModelRepository
from service.repository.version import ModelVersion

# Our states in the Open Inference Protocol's repository index (Triton's names).
INDEX_STATES = {
    "loading": "LOADING",
    "ready": "READY",
    "draining": "UNLOADING",
    "unloaded": "UNAVAILABLE",
    "failed": "UNAVAILABLE",
}


def repository_index(repository: ModelRepository, ready_only: bool) -> list[dict[str, str]]:
    """One ``{name, version, state, reason}`` per version known (or only the ready ones)."""
    index = []
    for name in sorted({name for name, _ in repository.versions}):
        for entry in repository.of(name):
            if ready_only and entry.state != "ready":
                continue
            index.append(
                {
                    "name": entry.name,
                    "version": entry.version,
                    "state": INDEX_STATES[entry.state],
                    "reason": _reason(repository, entry),
                }
            )
    return index


def _reason(repository: ModelRepository, entry: ModelVersion) -> str:
    if entry.reason:
        return entry.reason
    if entry.state == "unloaded":
        if entry.name in repository.held:
            return "unloaded on request"
        return f"not selected by the version policy ({repository.policy})"
    return ""


def models_listing(repository: ModelRepository, settings: Settings) -> dict[str, Any]:
    """Every model and version, the default model's card and runtime on top (as before the
    repository existed: one model's card and runtime)."""
    try:
        default: ModelVersion | None = repository.resolve(None, None)
    except ServiceError:  # no default (several models, none named) or nothing ready yet
        default = None
    versions = []
    for name in sorted({name for name, _ in repository.versions}):
        for entry in repository.of(name):
            described = entry.describe()
            described["default"] = entry is default
            if entry.inference is not None:
                described["card"] = entry.inference.card.model_dump(mode="json", exclude_none=True)
                described["runtime"] = runtime_info(entry.inference, settings)
            versions.append(described)
    shown = next((v for v in versions if v["default"]), {})
    return {
        "default_model": default.name if default else None,
        "version_policy": str(repository.policy),
        "ready": repository.readiness() is None,
        "models": versions,
        "card": shown.get("card"),
        "runtime": shown.get("runtime"),
    }


def runtime_info(inference: InferenceService, settings: Settings) -> dict[str, Any]:
    """Provider, batching settings, thread and request limits, counters of one version."""
    stats = inference.batcher.stats
    return {
        "provider": inference.runtime.provider,
        # Which engine, how it was chosen (forced, the only one, or measured here: the figures).
        "engine": {**inference.runtime.choice.describe(), **inference.runtime.engine.describe()},
        "model_file": str(inference.runtime.path),
        "warmup_seconds": inference.warmup_seconds,
        "batching": {
            "max_batch_size": inference.max_batch_size,
            "max_batch_delay_ms": inference.max_batch_delay_ms,
            "max_queue": settings.max_queue,
            "max_queue_wait_s": settings.max_queue_wait_s,
            "request_timeout_s": settings.request_timeout_s,
            "seconds_per_image": stats.seconds_per_image,
            "expected_wait_s": inference.admission.expected_wait_s(),
        },
        "threads": {
            "ort_intra_op": settings.intra_op_threads,
            "decode": settings.decode_workers,
        },
        "limits": {
            "max_upload_mb": settings.max_upload_mb,
            "max_pixels": settings.max_pixels,
            "max_files": settings.max_files,
            "max_aspect_ratio": settings.max_aspect_ratio,
            "max_header_kb": settings.max_header_kb,
            "header_timeout_s": settings.header_timeout_s,
            "body_timeout_s": settings.body_timeout_s,
            "max_connections": settings.max_connections,
            "keep_alive_s": settings.keep_alive_s,
            "drain_timeout_s": settings.drain_timeout_s,
        },
        "counters": {
            "queue_depth": inference.batcher.queue_depth,
            "in_flight": inference.batcher.in_flight,
            **stats.counters(),
            "batch_sizes": {str(k): v for k, v in sorted(stats.batch_sizes.items())},
            "mean_batch_size": stats.images / stats.batches if stats.batches else 0.0,
        },
    }
