"""The FastAPI application: settings → runtime → inference service, built in the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.config import Settings
from service.errors import install_error_handlers
from service.inference import InferenceService
from service.limits import BodySizeLimit
from service.metrics import BatcherCollector, HttpMetrics, MetricsMiddleware
from service.routes import inference, ops
from service.runtime import ModelRuntime

logger = logging.getLogger("service.app")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: read from the ``XCEPTION_*`` environment)."""
    settings = settings or Settings()
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading the session is quick and must succeed before we serve at all;
        # warm-up runs in the background while /healthz answers and /readyz says 503.
        runtime = await asyncio.to_thread(
            ModelRuntime,
            settings.model_file,
            settings.device,
            settings.intra_op_threads,
            settings.ort_spinning,
        )
        service = InferenceService(runtime, settings)
        registry.register(BatcherCollector(service.batcher))
        app.state.service = service
        service.start()
        try:
            yield
        finally:
            logger.info("shutting down: draining %d queued images", service.batcher.queue_depth)
            await service.stop()

    app = FastAPI(
        title="Xception inference service",
        summary="Top-k ImageNet labels and 2048-d bottleneck features, dynamically batched.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    install_error_handlers(app)
    app.include_router(inference.router)
    app.include_router(ops.router)
    # Outermost first: metrics see every response, including body-limit rejections.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(registry))
    return app
