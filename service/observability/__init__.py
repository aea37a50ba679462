"""What the service tells its operators: request ids and log format (``tracing``),
Prometheus metrics (``metrics``), OpenTelemetry spans (``telemetry``)."""
