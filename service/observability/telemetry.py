"""OpenTelemetry traces, when asked for with the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``.

Spans: the HTTP request (opentelemetry-instrumentation-fastapi), and ours — ``decode``, each
image's ``queue wait`` (in its request's trace), and the ``batch`` that ran it (linked to every
request it served) with its ``inference``. Without the endpoint, or without the ``otel`` extra
installed, the OpenTelemetry API's no-op tracer makes these calls free.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI

logger = logging.getLogger(__name__)
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def setup_tracing(app: FastAPI) -> Any:
    """Export spans over OTLP/HTTP if an endpoint is set; returns the provider (to shut down
    at exit, flushing what is buffered) or None."""
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry's SDK is not installed: "
            'pip install "xception-service[otel]"; no traces are exported'
        )
        return None
    name = os.environ.get("OTEL_SERVICE_NAME", "xception-service")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    logger.info("exporting OpenTelemetry traces as %r", name)
    return provider
