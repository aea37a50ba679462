"""The FastAPI application: settings → each part's slice (service.config.slices) → model
source → repository, built in the lifespan, and the request path's middlewares in their order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry

from service import __version__
from service.config import slices
from service.config.settings import Settings
from service.core.drain import DrainSignal
from service.core.priority import lower_thread_priority
from service.edge.envelope import install_error_handlers
from service.edge.gate import RequestGate
from service.edge.limits import BodyDeadline, BodySizeLimit
from service.observability.metrics import HttpMetrics, MetricsMiddleware, RepositoryCollector
from service.observability.telemetry import setup_tracing
from service.observability.tracing import RequestIdMiddleware
from service.repository.repository import ModelRepository
from service.repository.sources import ModelSource
from service.routes import inference, ops, schemas, v2
from service.routes import repository as repository_routes
from service.web import pages
from service.web.pages import DOCS_ASSETS, PageHeaders

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, source: ModelSource | None = None) -> FastAPI:
    """The app for ``settings`` (default: read from the ``XCEPTION_*`` environment).

    ``source``: where the models come from (default: the one the settings name);
    ``xception-serve`` passes the one it has scanned already, so that a single model that
    cannot load is one line on stderr before the server starts. Models load (and warm up)
    in the background while ``/healthz`` answers and ``/readyz`` says 503.
    """
    settings = settings or Settings()
    models = source or slices.source(settings)
    registry = CollectorRegistry()
    drain = DrainSignal(settings.drain_timeout_s)
    body = slices.body(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = slices.repository(settings)
        repository = ModelRepository(config, slices.inference(settings), drain, models)
        registry.register(RepositoryCollector(repository))
        app.state.repository = repository
        watching = asyncio.create_task(repository.watch(config.poll_s), name="models")
        # From here on, this thread (the event loop: HTTP, refusals) yields the CPU to
        # inference and decoding under contention; the decode threads and the model loader
        # thread (whose sessions and batchers create the inference threads) exist already.
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
    app.state.url_policy = slices.urls(settings)
    app.state.listed_settings = slices.listed(settings)
    app.state.registry = registry
    app.state.drain = drain
    pages.declare_api_docs_public(app)
    install_error_handlers(app)
    tracing = setup_tracing(app)
    app.include_router(inference.router)
    app.include_router(ops.router)
    app.include_router(v2.router)
    app.include_router(repository_routes.router)
    app.include_router(pages.router)
    pages.mount_ui(app)
    schemas.declare_limits(app, slices.inference(settings))

    # add_middleware wraps: the last added runs first. A request meets: its id → metrics (sees
    # every answer) → page headers → the gate (route, API key, admission: from the headers
    # alone) → the body's time limit → its size limit → the routes.
    app.add_middleware(BodySizeLimit, max_bytes=body.max_upload_bytes)
    app.add_middleware(BodyDeadline, timeout_s=body.body_timeout_s, drain=drain)
    app.add_middleware(
        RequestGate,
        repository=lambda: app.state.repository,
        routes=app.router.routes,
        keys=slices.access(settings),
    )
    app.add_middleware(PageHeaders)
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(registry))
    app.add_middleware(RequestIdMiddleware)
    return app
