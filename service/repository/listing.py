"""What the server says about its models: ``GET /v1/models`` (everything, with each loaded
version's card, runtime and counters) and ``POST /v2/repository/index`` (Triton's shape)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

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


def listed(settings_slice: Any) -> dict[str, Any]:
    """A slice of the settings (a dataclass) as JSON values: sets as sorted lists."""
    return {
        key: sorted(value) if isinstance(value, frozenset) else value
        for key, value in asdict(settings_slice).items()
    }


def _reason(repository: ModelRepository, entry: ModelVersion) -> str:
    if entry.reason:
        return entry.reason
    if entry.state == "unloaded":
        if entry.name in repository.held:
            return "unloaded on request"
        return f"not selected by the version policy ({repository.policy})"
    return ""


def models_listing(repository: ModelRepository, server: Mapping[str, Any]) -> dict[str, Any]:
    """Every model and version, the default model's card and runtime on top (as before the
    repository existed: one model's card and runtime). ``server``: the server-wide slices
    (``threads`` and ``limits``: service.config.slices.listed) beside each version's own."""
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
                described["runtime"] = runtime_info(entry.inference, server)
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


def runtime_info(inference: InferenceService, server: Mapping[str, Any]) -> dict[str, Any]:
    """Provider, batching and admission, threads, limits (the slices the version and the
    server were configured with, as they are), counters of one version."""
    stats = inference.batcher.stats
    limits = inference.limits
    return {
        "provider": inference.runtime.provider,
        # Which engine, how it was chosen (forced, the only one, or measured here: the figures).
        "engine": {**inference.runtime.choice.describe(), **inference.runtime.engine.describe()},
        "model_file": str(inference.runtime.path),
        "warmup_seconds": inference.warmup_seconds,
        "batching": {
            # The batcher's values: the provider's defaults where the settings left them unset.
            "max_batch_size": inference.max_batch_size,
            "max_batch_delay_ms": inference.max_batch_delay_ms,
            **asdict(limits.admission),
            "seconds_per_image": stats.seconds_per_image,
            "expected_wait_s": inference.admission.expected_wait_s(),
        },
        "threads": dict(server["threads"]),
        "limits": {**listed(limits.images), **server["limits"]},
        "counters": {
            "queue_depth": inference.batcher.queue_depth,
            "in_flight": inference.batcher.in_flight,
            **stats.counters(),
            "batch_sizes": {str(k): v for k, v in sorted(stats.batch_sizes.items())},
            "mean_batch_size": stats.images / stats.batches if stats.batches else 0.0,
        },
    }
