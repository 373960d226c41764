"""The GenAI semantic conventions' attributes, filled from OpenAI-style requests and answers.

Names follow OpenTelemetry's GenAI conventions (experimental, as of semconv 1.37+):
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, and the message content
(``gen_ai.input.messages``, ``gen_ai.output.messages``: JSON, role and parts) only when
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is true, redacted first where the
environment redacts personal data. llmops' own attributes sit under ``llmops.``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "OPERATION", "PROVIDER", "REQUEST_MODEL", "chat_span_name", "content_capture",
    "input_messages", "output_messages", "redact_content", "set_content_redactor", "set_usage",
]

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
CAPTURE_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

Redact = Callable[[str], str]
_redact: Redact | None = None  # the process's storage redaction (set by the gateway)


def set_content_redactor(redact: Redact | None) -> None:
    """What content put on spans goes through first (the environment's redaction), or None."""
    global _redact
    _redact = redact


def redact_content(text: str) -> str:
    """``text`` as a span may carry it: redacted where the environment redacts."""
    return _redact(text) if _redact is not None else text


def content_capture() -> bool:
    """Whether spans may carry prompts and answers (off unless the variable says true)."""
    return os.environ.get(CAPTURE_VARIABLE, "").strip().lower() in ("true", "1", "yes")


def chat_span_name(operation: str, model: str | None) -> str:
    """``{operation} {model}``, the conventions' span name (the operation alone without one)."""
    return f"{operation} {model}" if model else operation


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def input_messages(messages: Iterable[Any], redact: Redact | None = None) -> str:
    """``gen_ai.input.messages``: each message's role and text parts, as JSON."""
    out = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        text = _text(m.get("content"))
        out.append({"role": str(m.get("role", "user")),
                    "parts": [{"type": "text", "content": redact(text) if redact else text}]})
    return json.dumps(out, ensure_ascii=False)


def output_messages(text: str, finish_reason: str | None = None,
                    redact: Redact | None = None) -> str:
    """``gen_ai.output.messages``: the answer as one assistant message, as JSON."""
    message: dict[str, Any] = {"role": "assistant",
                               "parts": [{"type": "text", "content": redact(text) if redact else text}]}
    if finish_reason:
        message["finish_reason"] = finish_reason
    return json.dumps([message], ensure_ascii=False)


def set_usage(span: Any, input_tokens: Any, output_tokens: Any) -> None:
    """Token usage on ``span``, where known."""
    if isinstance(input_tokens, int):
        span.set_attribute(INPUT_TOKENS, input_tokens)
    if isinstance(output_tokens, int):
        span.set_attribute(OUTPUT_TOKENS, output_tokens)
