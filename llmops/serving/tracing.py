"""The gateway's spans: one per request, on the GenAI conventions, its context sent upstream.

A request's span starts when it arrives (``start_span``) and ends when its log row is written
(``finish_span``, called by ``GatewayState.log``), so that its outcome, tokens and versions
are the row's. Its context goes to the engine in a ``traceparent`` header (``engine_headers``):
vLLM started with ``--otlp-traces-endpoint`` makes its own spans children of it. A chain's
retrieval and model call are children too (``llmops.chains.qa`` opens them in the worker
thread, which inherits the request's context).

Attributes: ``gen_ai.operation.name`` (``chat``, ``text_completion``, ``invoke_agent`` for a
chain), ``gen_ai.provider.name`` (``vllm``), ``gen_ai.request.model``, token usage,
``http.response.status_code``, and under ``llmops.``: the request id, the client (a key's
name, never the key), the chain, prompt, index and adapter versions and the rollout arm.
Message content only when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is true,
and then as logged (redacted where the environment redacts).
"""

from __future__ import annotations

import json
from typing import Any

from llmops.telemetry import chat_span_name, content_capture, input_messages, output_messages, tracer
from llmops.telemetry import set_usage as _set_usage
from llmops.telemetry.genai import OPERATION, PROVIDER, REQUEST_MODEL

__all__ = ["engine_headers", "finish_span", "name_span", "operation_name", "start_span"]

_OPERATIONS = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion"}
# row field -> span attribute
_LINEAGE = (("request_id", "llmops.request_id"), ("client", "llmops.client"),
            ("client_request_id", "llmops.client_request_id"), ("chain", "llmops.chain.name"),
            ("chain_version", "llmops.chain.version"), ("prompt", "llmops.prompt.name"),
            ("prompt_version", "llmops.prompt.version"), ("index_version", "llmops.index.version"),
            ("adapter", "llmops.adapter"), ("rollout_id", "llmops.rollout.id"),
            ("rollout_arm", "llmops.rollout.arm"), ("env", "llmops.env"))


def operation_name(endpoint: str) -> str:
    """The GenAI operation an endpoint performs."""
    if endpoint.startswith("/v1/chains/"):
        return "invoke_agent"
    return _OPERATIONS.get(endpoint, "chat")


def start_span(endpoint: str, request_id: str, model: str | None = None) -> Any:
    """The request's span (a no-op one when tracing is off), not yet current."""
    from opentelemetry.trace import SpanKind

    operation = operation_name(endpoint)
    attributes: dict[str, Any] = {OPERATION: operation, PROVIDER: "vllm",
                                  "llmops.request_id": request_id, "http.route": endpoint
                                  if not endpoint.startswith("/v1/chains/")
                                  else "/v1/chains/{name}/invoke"}
    if model:
        attributes[REQUEST_MODEL] = model
    return tracer().start_span(chat_span_name(operation, model), kind=SpanKind.SERVER,
                               attributes=attributes)


def name_span(span: Any, endpoint: str, model: str) -> None:
    """Name the span after its model, once the body has said which."""
    if span.is_recording():
        span.update_name(chat_span_name(operation_name(endpoint), model))
        span.set_attribute(REQUEST_MODEL, model)


def engine_headers(span: Any) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) naming ``span``, for the engine's request."""
    if not span.is_recording():
        return {}
    from opentelemetry import propagate, trace

    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return headers


def _messages(row: dict[str, Any]) -> str | None:
    try:
        body = json.loads(row.get("request") or "")
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("messages"), list):
        return input_messages(body["messages"])
    prompt = body.get("prompt", body.get("question"))
    if isinstance(prompt, list):
        prompt = "\n".join(p for p in prompt if isinstance(p, str))
    if isinstance(prompt, str):
        return input_messages([{"role": "user", "content": prompt}])
    return None


def finish_span(span: Any, row: dict[str, Any]) -> None:
    """Put the logged row's outcome on ``span`` and end it."""
    from opentelemetry.trace import Status, StatusCode

    if span.is_recording():
        for field, attribute in _LINEAGE:
            value = row.get(field)
            if value not in (None, ""):
                span.set_attribute(attribute, str(value))
        model = row.get("adapter") or row.get("model")
        if model:
            span.set_attribute(REQUEST_MODEL, str(model))
        status = int(row.get("status") or 0)
        span.set_attribute("http.response.status_code", status)
        _set_usage(span, row.get("prompt_tokens"), row.get("completion_tokens"))
        if status >= 400:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR, str(row.get("response") or "")[:200]))
        if content_capture():
            asked = _messages(row)
            if asked is not None:
                span.set_attribute("gen_ai.input.messages", asked)
            if status < 400:
                span.set_attribute("gen_ai.output.messages",
                                   output_messages(str(row.get("response") or "")))
    span.end()
