"""Prometheus metrics of the gateway: requests, errors, latency, tokens, feedback, limits, log.

Every label takes values from a bounded set: the gateway's routes, the models and
chains it serves (anything else is ``unknown``), the keys of its keys file.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GatewayMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKEN_BUCKETS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096)


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
