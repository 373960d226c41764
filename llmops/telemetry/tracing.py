"""Where spans go: an OTLP exporter chosen from the standard variables or the MLflow server.

The exporter is OTLP over HTTP (protobuf), configured as every OpenTelemetry SDK is:
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``, to which
``/v1/traces`` is added), ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``; ``OTEL_SDK_DISABLED=true`` turns tracing off. With none of
them set, an environment whose tracking URI is an MLflow server (``http(s)://``) sends its
spans to that server's ``/v1/traces`` (MLflow's OTLP endpoint), into the project's
experiment. Anything else (a local sqlite store): no exporter, and spans cost nothing.

The provider is llmops' own, not OpenTelemetry's global one: a process may hold several
gateways (tests), and MLflow keeps its own tracer provider for its traces.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["Tracing", "configure_tracing", "flush_tracing", "shutdown_tracing", "tracer"]

log = logging.getLogger(__name__)
_SCOPE = "llmops"
_lock = threading.Lock()
_current: Tracing | None = None


@dataclass
class Tracing:
    """A configured tracer provider and where it exports (the endpoint, for logs)."""

    provider: Any
    endpoint: str
    sink: str  # "otlp" (the OTEL_* variables) or "mlflow"

    def flush(self, timeout_s: float = 10.0) -> bool:
        return bool(self.provider.force_flush(int(timeout_s * 1000)))


def _disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _otlp_endpoint() -> str | None:
    explicit = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if explicit:
        return explicit
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


def _defaults(service_name: str, attributes: dict[str, str] | None) -> dict[str, str]:
    """The resource's attributes, less those OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES set
    (the operator's variables win: ``Resource.create`` lets given attributes win)."""
    given = {"service.name": service_name, **(attributes or {})}
    named = {pair.split("=", 1)[0].strip()
             for pair in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",") if "=" in pair}
    if os.environ.get("OTEL_SERVICE_NAME"):
        named.add("service.name")
    return {k: v for k, v in given.items() if k not in named}


def configure_tracing(service_name: str, tracking_uri: str | None = None,
                      experiment_id: str | None = None,
                      attributes: dict[str, str] | None = None) -> Tracing | None:
    """Start exporting this process's llmops spans; None when nothing is configured.

    ``tracking_uri`` and ``experiment_id`` name the MLflow sink, used when no
    ``OTEL_EXPORTER_OTLP_*`` endpoint is set. A second call replaces the first
    (its spans are flushed first).
    """
    global _current
    if _disabled():
        return None
    endpoint = _otlp_endpoint()
    sink = "otlp"
    headers: dict[str, str] | None = None  # None: the exporter reads OTEL_EXPORTER_OTLP_HEADERS
    if endpoint is None:
        if not (tracking_uri or "").startswith(("http://", "https://")) or not experiment_id:
            return None
        endpoint = tracking_uri.rstrip("/") + "/v1/traces"  # type: ignore[union-attr]
        headers = {"x-mlflow-experiment-id": str(experiment_id)}
        sink = "mlflow"
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create(_defaults(service_name, attributes)))
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    setup = Tracing(provider=provider, endpoint=endpoint, sink=sink)
    with _lock:
        previous, _current = _current, setup
    if previous is not None:
        previous.provider.shutdown()
    log.info("tracing: spans go to %s (%s)", endpoint.split("?", 1)[0], sink)
    return setup


def flush_tracing(timeout_s: float = 10.0) -> None:
    """Send the spans still buffered (at a gateway's shutdown)."""
    setup = _current
    if setup is not None:
        setup.flush(timeout_s)


def shutdown_tracing() -> None:
    """Flush and stop the exporter (at the gateway's shutdown); spans are no-ops after."""
    global _current
    with _lock:
        setup, _current = _current, None
    if setup is not None:
        setup.provider.shutdown()


def tracer() -> Any:
    """The tracer llmops opens its spans with: the configured one, else a no-op tracer."""
    setup = _current
    if setup is not None:
        return setup.provider.get_tracer(_SCOPE)
    from opentelemetry import trace

    return trace.NoOpTracer()
