"""Online rollouts: a chain's candidate version against production on live traffic,
judged by user feedback with an always-valid sequential test, promoted or rolled back on
evidence. The state lives in the ``rollouts`` Delta table; the gateway routes by it."""

from __future__ import annotations

from llmops.rollouts.assignment import (
    BUCKETS,
    Arm,
    assign_arm,
    bucket,
)
from llmops.rollouts.config import (
    GUARDRAILS,
    RolloutSpec,
)
from llmops.rollouts.evidence import (
    ArmEvidence,
    collect_evidence,
)
from llmops.rollouts.judging import (
    Judgement,
    judge,
)
from llmops.rollouts.lifecycle import (
    Evaluation,
    abort_rollout,
    approve_rollout,
    evaluate_rollout,
    start_rollout,
)
from llmops.rollouts.report import (
    analysis,
    plot_rollout,
    status_lines,
)
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
from llmops.rollouts.store import (
    RolloutState,
    history,
    latest_for_chain,
    running_by_chain,
)

__all__ = [
    "Arm",
    "ArmCounts",
    "ArmEvidence",
    "BUCKETS",
    "Comparison",
    "DEFAULT_MIN_RATED",
    "DEFAULT_TUNED_FOR",
    "Evaluation",
    "GUARDRAILS",
    "GuardrailVerdict",
    "Judgement",
    "RolloutSpec",
    "RolloutState",
    "Verdict",
    "abort_rollout",
    "approve_rollout",
    "analysis",
    "assign_arm",
    "bucket",
    "collect_evidence",
    "compare",
    "confidence_bounds",
    "confidence_sequence",
    "evaluate_rollout",
    "history",
    "judge",
    "latency_p95_not_worse",
    "latest_for_chain",
    "plot_rollout",
    "rate_confidence_sequence",
    "rate_not_worse",
    "running_by_chain",
    "start_rollout",
    "status_lines",
]
