"""What the gateway stores, redacted where the environment redacts (``llmops.privacy``).

``logging_only``: the engine gets the prompt and the client the answer as they were; only the
copies written to the write-ahead log (and from there the Delta tables and the trace spans
made from a log row) go through the ``Redactor``. It runs inline, before the row's write,
so that a row is durable, redacted, before the client is answered
(``benchmarks/pii_redaction.py`` measures what it costs per request).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llmops.privacy import Redactor

__all__ = ["RedactionCounter"]


class RedactionCounter:
    """``llmops_redactions_total{entity}``: entities redacted before storage, read from the
    redactor's own counts at each scrape (a Prometheus custom collector)."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "llmops_redactions", "Personal data and secrets redacted before storage.",
            labels=["entity"])
        for entity, count in sorted(self.redactor.counts().items()):
            family.add_metric([entity], count)
        yield family
