"""A rollout's status for people (text, a plot) and for machines (the analysis of Argo/Flagger)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmops.rollouts.stats import ArmCounts, rate_confidence_sequence
from llmops.rollouts.store import RolloutState, history

__all__ = ["analysis", "plot_rollout", "status_lines"]

_PHASE = {"running": "running", "awaiting_approval": "paused", "promoted": "successful",
          "rolled_back": "failed", "aborted": "failed", "inconclusive": "failed"}


def analysis(state: RolloutState, last: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``GET /v1/rollouts/{name}/analysis`` answers: ``phase`` is ``successful`` (the
    candidate was promoted), ``failed`` (it was rolled back, aborted or ended without
    evidence), ``paused`` (awaiting a person's approval) or ``running``."""
    out: dict[str, Any] = {
        "phase": _PHASE.get(state.status, "running"), "rollout_id": state.rollout_id,
        "chain": state.chain, "production": state.production, "candidate": state.candidate,
        "status": state.status, "share": state.share, "decision": state.decision,
        "reasons": state.reasons,
    }
    if last:
        out["arms"] = {
            arm: {k: last.get(f"{prefix}_{k}") for k in ("requests", "errors", "rated", "up")}
            for arm, prefix in (("production", "prod"), ("candidate", "cand"))}
        out["difference"] = {"estimate": last.get("diff"), "low": last.get("diff_low"),
                             "high": last.get("diff_high")}
    return out


def _interval(rated: Any, up: Any, alpha: float, tuned_for: int) -> str:
    if not rated or rated != rated:
        return "no ratings yet"
    low, high = rate_confidence_sequence(ArmCounts(int(rated), int(up)), alpha=alpha,
                                         tuned_for=tuned_for)
    return f"{int(up)}/{int(rated)} up = {up / rated:.2f} [{low:.2f}, {high:.2f}]"


def status_lines(state: RolloutState, lakehouse: Path, changes_only: bool = False) -> list[str]:
    """``llmops rollout status``: the arms, the rates with their intervals, the guardrails'
    inputs, the step and the decisions so far (``changes_only``: without the ``continue``
    rows, the judgements that changed nothing)."""
    rows = history(lakehouse, state.rollout_id)
    shares = ", ".join(f"[{s}%]" if i == state.step and state.running else f"{s}%"
                       for i, s in enumerate(state.spec.shares))
    lines = [f"rollout {state.rollout_id}: {state.chain} production {state.production} vs "
             f"candidate {state.candidate}, {state.status}",
             f"  steps: {shares} (candidate's share of traffic; {state.share}% now)"]
    judged = rows[rows["decision"] != "start"].dropna(subset=["prod_requests"])
    if len(judged):
        last = judged.iloc[-1]
        alpha = state.spec.alpha
        for arm, prefix in (("production", "prod"), ("candidate", "cand")):
            p95 = last[f"{prefix}_latency_p95_ms"]
            lines.append(
                f"  {arm:10s} {int(last[f'{prefix}_requests'])} requests, "
                f"{int(last[f'{prefix}_errors'])} errors, p95 "
                f"{f'{p95:.0f} ms' if p95 == p95 else '-'}; thumbs "
                f"{_interval(last[f'{prefix}_rated'], last[f'{prefix}_up'], alpha, state.spec.tuned_for)}")
        if last["diff_low"] == last["diff_low"]:
            lines.append(f"  difference (candidate - production): {last['diff']:+.3f}, "
                         f"always-valid {1 - alpha:.0%} interval [{last['diff_low']:+.3f}, "
                         f"{last['diff_high']:+.3f}]")
    lines.append("  decisions:")
    for row in rows.itertuples(index=False):
        if changes_only and row.decision == "continue":
            continue
        reasons = "; ".join(json.loads(row.reasons or "[]"))
        lines.append(f"    {row.ts:%Y-%m-%d %H:%M:%S} {row.decision:12s} {reasons}")
    return lines


def plot_rollout(state: RolloutState, lakehouse: Path, out: Path) -> Path | None:
    """Each arm's thumbs-up rate and its always-valid interval over time, as a PNG."""
    rows = history(lakehouse, state.rollout_id).dropna(subset=["prod_rated"])
    if len(rows) == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for arm, prefix, color in (("production", "prod", "tab:blue"),
                               ("candidate", "cand", "tab:orange")):
        ts, rate, lows, highs = [], [], [], []
        for row in rows.itertuples(index=False):
            rated, up = getattr(row, f"{prefix}_rated"), getattr(row, f"{prefix}_up")
            if not rated:
                continue
            low, high = rate_confidence_sequence(ArmCounts(int(rated), int(up)),
                                                 alpha=state.spec.alpha,
                                                 tuned_for=state.spec.tuned_for)
            ts.append(row.ts)
            rate.append(up / rated)
            lows.append(low)
            highs.append(high)
        if ts:
            ax.plot(ts, rate, marker="o", color=color, label=f"{arm} (version "
                    f"{state.production if arm == 'production' else state.candidate})")
            ax.fill_between(ts, lows, highs, color=color, alpha=0.2)
    ax.set_ylim(0, 1)
    ax.set_ylabel("thumbs-up rate")
    ax.set_title(f"rollout {state.rollout_id}: {state.status}")
    ax.legend(loc="lower left")
    fig.autofmt_xdate()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
