"""The FastAPI application: settings → runtime → inference service, built in the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from starlette.types import Scope

from artifact.runtime import ModelRuntime
from service import __version__, pages
from service.admission import Admission, Refusal
from service.config import Settings
from service.errors import install_error_handlers
from service.guards import AdmissionGate, ApiKeyGuard
from service.limits import BodyDeadline, BodySizeLimit, DrainSignal
from service.metrics import HttpMetrics, MetricsMiddleware, RepositoryCollector
from service.pages import DOCS_ASSETS, PageHeaders
from service.priority import lower_thread_priority
from service.repository import routing
from service.repository.repository import ModelRepository
from service.routes import inference, ops, v2
from service.routes import repository as repository_routes
from service.telemetry import setup_tracing
from service.tracing import RequestIdMiddleware

logger = logging.getLogger("service.app")


def load_runtime(settings: Settings) -> ModelRuntime:
    """The ONNX Runtime session for ``settings`` (raises ModelLoadError, one clear line)."""
    return ModelRuntime(
        settings.model_file, settings.device, settings.intra_op_threads, settings.ort_spinning
    )


def create_app(settings: Settings | None = None, runtime: ModelRuntime | None = None) -> FastAPI:
    """The app for ``settings`` (default: read from the ``XCEPTION_*`` environment).

    ``runtime``: single-model mode's model, already loaded (``xception-serve`` loads it
    first, so a bad model file is one line on stderr rather than a traceback from inside the
    server). In repository mode the models load in the background; failures are reported.
    """
    settings = settings or Settings()
    registry = CollectorRegistry()
    drain = DrainSignal(settings.drain_timeout_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A single model must load before we serve at all; warm-up (and, in repository mode,
        # every load) runs in the background while /healthz answers and /readyz says 503.
        loaded = runtime
        if loaded is None and settings.model_repository is None:
            loaded = await asyncio.to_thread(load_runtime, settings)
        repository = ModelRepository(settings, drain, loaded)
        registry.register(RepositoryCollector(repository))
        app.state.repository = repository
        poll_s = settings.poll_s if settings.model_repository is not None else 0.0
        watching = asyncio.create_task(repository.watch(poll_s), name="model repository")
        # From here on, this thread (the event loop: HTTP, refusals) and the decode threads it
        # starts yield the CPU to inference under contention; the model loader thread (whose
        # sessions and batchers create the inference threads) exists already.
        lower_thread_priority(settings.http_niceness)
        try:
            yield
        finally:
            logger.info("shutting down: draining the models' queues")
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await repository.stop()
            if tracing is not None:
                tracing.shutdown()  # flushes the spans still buffered

    # fastapi-offline: FastAPI with Swagger UI's and ReDoc's files served from this process
    # (the stock /docs loads them from a CDN: a blank page on an air-gapped host).
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="Xception inference service",
        summary="Top-k ImageNet labels and 2048-d bottleneck features, dynamically batched.",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.drain = drain
    install_error_handlers(app)
    tracing = setup_tracing(app)
    app.include_router(inference.router)
    app.include_router(ops.router)
    app.include_router(v2.router)
    app.include_router(repository_routes.router)
    app.include_router(pages.router)
    pages.mount_ui(app)

    def admit(scope: Scope) -> Admission | Refusal:
        return routing.admit(app.state.repository, scope)

    # add_middleware wraps: the last added runs first. Order of a request: request id →
    # metrics (sees
    # every answer) → API key → admission → body time limit → body size limit → routes.
    # Everything before the body limits answers from the headers alone.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(BodyDeadline, timeout_s=settings.body_timeout_s, drain=drain)
    app.add_middleware(AdmissionGate, admission=admit)
    key = settings.api_key.get_secret_value() if settings.api_key else None
    app.add_middleware(ApiKeyGuard, api_key=key)
    app.add_middleware(PageHeaders)
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(registry))
    app.add_middleware(RequestIdMiddleware)
    return app
