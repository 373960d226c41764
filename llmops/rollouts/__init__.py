"""Online rollouts: the statistics that judge a candidate against production on live feedback."""

from __future__ import annotations

from llmops.rollouts.stats import (
    DEFAULT_MIN_RATED,
    DEFAULT_TUNED_FOR,
    ArmCounts,
    Comparison,
    GuardrailVerdict,
    Verdict,
    compare,
    confidence_bounds,
    confidence_sequence,
    latency_p95_not_worse,
    rate_confidence_sequence,
    rate_not_worse,
)

__all__ = [
    "DEFAULT_MIN_RATED",
    "DEFAULT_TUNED_FOR",
    "ArmCounts",
    "Comparison",
    "GuardrailVerdict",
    "Verdict",
    "compare",
    "confidence_bounds",
    "confidence_sequence",
    "latency_p95_not_worse",
    "rate_confidence_sequence",
    "rate_not_worse",
]
