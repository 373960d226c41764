"""OpenTelemetry traces on the GenAI semantic conventions, for the gateway and the chains.

``configure_tracing`` picks the exporter (the standard ``OTEL_EXPORTER_OTLP_*`` variables,
else the MLflow tracking server's OTLP endpoint); ``tracer`` is what the gateway and the
chains open spans with (no-op spans until tracing is configured); ``genai`` holds the
attribute names and the helpers that fill them.
"""

from llmops.telemetry.genai import (
    chat_span_name,
    content_capture,
    input_messages,
    output_messages,
    set_usage,
)
from llmops.telemetry.tracing import (
    Tracing,
    configure_tracing,
    flush_tracing,
    shutdown_tracing,
    tracer,
)

__all__ = [
    "Tracing",
    "chat_span_name",
    "configure_tracing",
    "content_capture",
    "flush_tracing",
    "input_messages",
    "output_messages",
    "set_usage",
    "shutdown_tracing",
    "tracer",
]
