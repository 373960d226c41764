"""Prometheus metrics of the gateway: requests, errors, latency, tokens, feedback, limits, log.

Every label takes values from a bounded set: the gateway's routes, the models and
chains it serves (anything else is ``unknown``), the keys of its keys file.

The serving figures a platform team compares across services carry the names of
OpenTelemetry's GenAI metrics, as its Prometheus exporter writes them
(``gen_ai.server.time_to_first_token`` in seconds: ``gen_ai_server_time_to_first_token_seconds``;
``gen_ai.client.token.usage``: ``gen_ai_client_token_usage`` with ``gen_ai_token_type``), and
vLLM's bucket boundaries, so that one dashboard reads the gateway beside the engine
(``vllm:time_to_first_token_seconds``, ``vllm:request_queue_time_seconds``). Their labels:
``gen_ai_operation_name``, ``gen_ai_request_model``, ``chain`` and ``key`` (a key's name,
``anonymous`` without keys). ``serving/grafana/`` and ``serving/prometheus/`` read them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GatewayMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKEN_BUCKETS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096)
# vLLM's buckets for the same figures (vllm/v1/metrics/loggers.py)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                 7.5, 10.0, 20.0, 40.0, 80.0)
_QUEUE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
GENAI_LABELS = ["gen_ai_operation_name", "gen_ai_request_model", "chain", "key"]


class GatewayMetrics:
    """One registry per gateway, so that two gateways in one process never share counters."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = ["endpoint", "model", "adapter", "chain"]
        self.requests = Counter("llmops_requests", "Requests answered.", labels + ["status"],
                                registry=self.registry)
        self.errors = Counter("llmops_errors", "Requests answered with an error status.",
                              labels + ["status"], registry=self.registry)
        self.latency = Histogram("llmops_request_latency_seconds", "Request latency.", labels,
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.prompt_tokens = Histogram("llmops_prompt_tokens", "Prompt tokens per request.",
                                       labels, buckets=_TOKEN_BUCKETS, registry=self.registry)
        self.completion_tokens = Histogram("llmops_completion_tokens",
                                           "Completion tokens per request.", labels,
                                           buckets=_TOKEN_BUCKETS, registry=self.registry)
        self.feedback = Counter("llmops_feedback", "Feedback received.", ["kind"],
                                registry=self.registry)
        self.rate_limited = Counter("llmops_rate_limited", "Requests refused with 429.",
                                    ["key"], registry=self.registry)
        self.log_flush_failures = Gauge("llmops_log_flush_failures",
                                        "Failed flushes of the write-ahead log into Delta.",
                                        registry=self.registry)
        self.log_backlog = Gauge("llmops_log_backlog_rows",
                                 "Logged rows not yet committed to Delta.",
                                 registry=self.registry)
        self.upstream_retries = Gauge("llmops_upstream_retries",
                                      "Requests resent after the engine closed a pooled "
                                      "connection under them.", registry=self.registry)

        genai = GENAI_LABELS
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from the request's arrival to its first streamed token (streams only).",
            genai, buckets=_TTFT_BUCKETS, registry=self.registry)
        self.tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first (streams only).",
            genai, buckets=_TPOT_BUCKETS, registry=self.registry)
        self.duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Time from the request's arrival to its last byte.",
            [*genai, "error_type"], buckets=_TTFT_BUCKETS, registry=self.registry)
        self.token_usage = Histogram(
            "gen_ai_client_token_usage", "Tokens per request, input and output.",
            [*genai, "gen_ai_token_type"], buckets=_TOKEN_BUCKETS, registry=self.registry)
        self.tokens = Counter(
            "llmops_tokens", "Tokens in and out (vLLM: prompt_tokens / generation_tokens).",
            [*genai, "gen_ai_token_type"], registry=self.registry)
        self.queue_time = Histogram(
            "llmops_request_queue_time_seconds",
            "Time a request waited in the gateway before it went to the engine (the body's "
            "arrival, the checks, a free worker for a chain); the engine's own queue is "
            "vLLM's vllm:request_queue_time_seconds.",
            genai, buckets=_QUEUE_BUCKETS, registry=self.registry)

    def observe_genai(self, row: dict[str, Any], labels: dict[str, str], *,
                      first_token_s: float | None = None,
                      queue_s: float | None = None) -> None:
        """The serving figures of one answered request (``row``: its log row)."""
        status = int(row["status"])
        duration = row["latency_ms"] / 1000
        self.duration.labels(**labels, error_type="" if status < 400 else str(status)).observe(
            duration)
        if queue_s is not None:
            self.queue_time.labels(**labels).observe(queue_s)
        if status >= 400:
            return
        for kind, value in (("input", row.get("prompt_tokens")),
                            ("output", row.get("completion_tokens"))):
            if isinstance(value, int):
                self.token_usage.labels(**labels, gen_ai_token_type=kind).observe(value)
                self.tokens.labels(**labels, gen_ai_token_type=kind).inc(value)
        if first_token_s is not None:
            self.ttft.labels(**labels).observe(first_token_s)
            out = row.get("completion_tokens")
            if isinstance(out, int) and out > 1 and duration > first_token_s:
                self.tpot.labels(**labels).observe((duration - first_token_s) / (out - 1))

    def observe(self, row: dict[str, Any], labels: dict[str, str]) -> None:
        status = str(row["status"])
        self.requests.labels(**labels, status=status).inc()
        if row["status"] >= 400:
            self.errors.labels(**labels, status=status).inc()
        self.latency.labels(**labels).observe(row["latency_ms"] / 1000)
        if row.get("prompt_tokens") is not None:
            self.prompt_tokens.labels(**labels).observe(row["prompt_tokens"])
        if row.get("completion_tokens") is not None:
            self.completion_tokens.labels(**labels).observe(row["completion_tokens"])

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
