"""Operations endpoints: liveness, readiness, the model and runtime, Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.config import Settings
from service.deps import ServiceDep, get_settings
from service.schemas import ModelsResponse, Status

router = APIRouter()


@router.get("/healthz", response_model=Status)
async def healthz() -> Status:
    """200 while the process is alive."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status)
async def readyz(service: ServiceDep) -> Status:
    """200 once the model is loaded and warmed up; 503 before (and while draining)."""
    service.require_ready()
    return Status(status="ready")


@router.get("/v1/models", response_model=ModelsResponse)
async def models(
    service: ServiceDep, settings: Annotated[Settings, Depends(get_settings)]
) -> ModelsResponse:
    """The model card plus the live runtime: provider, batching settings, counters."""
    stats = service.batcher.stats
    card = service.card.model_dump(mode="json", exclude_none=True)
    return ModelsResponse(
        card=card,
        runtime={
            "provider": service.runtime.provider,
            "model_file": str(service.runtime.path),
            "ready": service.ready,
            "warmup_seconds": service.warmup_seconds,
            "batching": {
                "max_batch_size": service.max_batch_size,
                "max_batch_delay_ms": service.max_batch_delay_ms,
                "max_queue": settings.max_queue,
                "max_queue_wait_s": settings.max_queue_wait_s,
                "request_timeout_s": settings.request_timeout_s,
                "seconds_per_image": stats.seconds_per_image,
                "expected_wait_s": service.admission.expected_wait_s(),
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
                "queue_depth": service.batcher.queue_depth,
                "in_flight": service.batcher.in_flight,
                **stats.counters(),
                "batch_sizes": {str(k): v for k, v in sorted(stats.batch_sizes.items())},
                "mean_batch_size": stats.images / stats.batches if stats.batches else 0.0,
            },
        },
    )


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
