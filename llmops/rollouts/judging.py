"""Judge a rollout on its evidence: advance, promote, roll back, end inconclusive, or keep going.

The order of the checks, each evaluation:

1. a guardrail breached (the candidate's error rate or p95 latency worse than production's by
   more than the spec's margin, once each arm has ``min_requests``): **roll back**;
2. the always-valid interval of the thumbs-up difference entirely below 0: **roll back**;
   entirely above 0: **promote** (each arm needs ``min_rated`` rated answers first), or, where
   the spec asks for a person's approval, **await approval** (traffic stays as it is; later
   evaluations can still roll back; ``approve_rollout`` promotes);
3. otherwise, at a step that is not the last, once the candidate has ``min_rated_per_step``
   rated answers at this step: **advance** to the next share;
4. otherwise, past ``max_rated`` rated answers of the candidate: end **inconclusive**
   (production keeps its traffic, the candidate is not rejected);
5. otherwise: **continue** collecting.

Because the interval stays valid however often it is read, judging after every rating is
safe: with equal arms a wrong promotion or rollback happens in at most ``alpha`` of rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmops.rollouts.evidence import ArmEvidence
from llmops.rollouts.stats import ArmCounts, Comparison, compare, latency_p95_not_worse, rate_not_worse
from llmops.rollouts.store import RolloutState

__all__ = ["Judgement", "evidence_columns", "judge"]


@dataclass
class Judgement:
    """A decision, the state it leads to, and why."""

    decision: str  # continue, advance, promote, await_approval, rollback, inconclusive
    state: RolloutState
    comparison: Comparison
    evidence: dict[str, ArmEvidence]
    reasons: list[str] = field(default_factory=list)
    guardrails: dict[str, str] = field(default_factory=dict)


def judge(state: RolloutState, evidence: dict[str, ArmEvidence],
          now: datetime | None = None) -> Judgement:
    """The decision ``state``'s spec takes on ``evidence`` (a running rollout only)."""
    spec = state.spec
    prod, cand = evidence["production"], evidence["candidate"]
    comparison = compare(ArmCounts(prod.rated, prod.up), ArmCounts(cand.rated, cand.up),
                         alpha=spec.alpha, min_rated=spec.min_rated,
                         tuned_for=spec.tuned_for)
    guardrails: dict[str, str] = {}
    reasons: list[str] = []
    if "error_rate" in spec.guardrails:
        guardrails["error_rate"] = rate_not_worse(
            prod.errors, prod.requests, cand.errors, cand.requests,
            margin=spec.error_rate_margin, alpha=spec.alpha, min_total=spec.min_requests,
            tuned_for=spec.tuned_for)
        if guardrails["error_rate"] == "breached":
            reasons.append(f"error rate {cand.error_rate:.3f} vs production "
                           f"{prod.error_rate:.3f}: worse by more than the margin "
                           f"{spec.error_rate_margin}")
    if "latency_p95" in spec.guardrails:
        guardrails["latency_p95"] = latency_p95_not_worse(
            prod.latencies_ms, cand.latencies_ms, margin_ratio=spec.latency_p95_ratio - 1,
            min_count=spec.min_requests)
        if guardrails["latency_p95"] == "breached":
            reasons.append(f"p95 latency {cand.latency_p95_ms:.0f} ms vs production "
                           f"{prod.latency_p95_ms:.0f} ms: over {spec.latency_p95_ratio}x")
    now = now or datetime.now(timezone.utc)
    rates = (f"thumbs-up {_rate(cand)} vs production {_rate(prod)}, difference interval "
             f"[{comparison.low:+.3f}, {comparison.high:+.3f}] at alpha {spec.alpha}")
    if reasons:
        return _ended(state, "rollback", "rolled_back", comparison, evidence, reasons, guardrails)
    if comparison.verdict == "worse":
        return _ended(state, "rollback", "rolled_back", comparison, evidence,
                      [f"users like it less: {rates}"], guardrails)
    if comparison.verdict == "better":
        if spec.approval == "human":
            if state.status == "awaiting_approval":
                return _kept(state, comparison, evidence, guardrails,
                             f"awaiting approval: {rates}")
            moved = state.moved(status="awaiting_approval", decision="await_approval", reasons=[
                f"users like it better: {rates}; waiting for 'llmops rollout approve "
                f"{state.chain}' (or abort)"])
            return Judgement("await_approval", moved, comparison, evidence, moved.reasons,
                             guardrails)
        return _ended(state, "promote", "promoted", comparison, evidence,
                      [f"users like it better: {rates}"], guardrails)
    if state.status == "awaiting_approval":  # a person decides now; the judge only rolls back
        return _kept(state, comparison, evidence, guardrails, f"awaiting approval: {rates}")
    last = len(spec.shares) - 1
    if state.step < last and cand.step_rated >= spec.min_rated_per_step:
        moved = state.moved(step=state.step + 1, decision="advance", step_started=now,
                            reasons=[f"no harm seen at {state.share}% ({rates}); "
                                     f"moving to {spec.shares[state.step + 1]}%"])
        return Judgement("advance", moved, comparison, evidence, moved.reasons, guardrails)
    if cand.rated >= spec.max_rated:
        return _ended(state, "inconclusive", "inconclusive", comparison, evidence,
                      [f"no significant difference after {cand.rated} rated answers of the "
                       f"candidate ({rates}): production stays"], guardrails)
    waiting = ("collecting: " + (f"{cand.rated}/{spec.min_rated} rated answers of the candidate, "
                                 f"{prod.rated}/{spec.min_rated} of production"
                                 if comparison.verdict == "too_few" else rates))
    kept = state.moved(decision="continue", reasons=[waiting])
    return Judgement("continue", kept, comparison, evidence, kept.reasons, guardrails)


def _kept(state: RolloutState, comparison: Comparison, evidence: dict[str, ArmEvidence],
          guardrails: dict[str, str], reason: str) -> Judgement:
    kept = state.moved(decision="continue", reasons=[reason])
    return Judgement("continue", kept, comparison, evidence, kept.reasons, guardrails)


def _rate(arm: ArmEvidence) -> str:
    return f"{arm.up}/{arm.rated} ({arm.rate:.2f})" if arm.rated else "0/0"


def _ended(state: RolloutState, decision: str, status: str, comparison: Comparison,
           evidence: dict[str, ArmEvidence], reasons: list[str],
           guardrails: dict[str, str]) -> Judgement:
    return Judgement(decision, state.moved(status=status, decision=decision, reasons=reasons),
                     comparison, evidence, reasons, guardrails)


def evidence_columns(judgement: Judgement) -> dict[str, Any]:
    """The ``rollouts`` row's evidence columns for a judgement."""
    row: dict[str, Any] = {}
    for arm, prefix in (("production", "prod"), ("candidate", "cand")):
        ev = judgement.evidence[arm]
        row.update({f"{prefix}_requests": ev.requests, f"{prefix}_errors": ev.errors,
                    f"{prefix}_rated": ev.rated, f"{prefix}_up": ev.up,
                    f"{prefix}_latency_p95_ms": ev.latency_p95_ms})
    c = judgement.comparison
    finite = [v if v == v and abs(v) < 1e29 else None for v in (c.difference, c.low, c.high)]
    row.update(diff=finite[0], diff_low=finite[1], diff_high=finite[2])
    return row
