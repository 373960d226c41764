"""The demo's canary: the adapter's chain against production on simulated live traffic.

A simulation, said as such: simulated users, each new, ask golden-set questions (the demo
passes step 7's, whose corrections the candidate learned from) through the gateway's chain
endpoint and rate each answer by its reference fact, as in step 7. The
gateway splits their traffic by the rollout and judges it on its own every few seconds
(``gateway.rollout_evaluate_s``); the demo only sends users until the rollout has ended.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.config import Settings
from llmops.demo.users import UserVerdict, ask_and_judge
from llmops.rollouts import (
    RolloutSpec,
    RolloutState,
    abort_rollout,
    history,
    latest_for_chain,
    plot_rollout,
    start_rollout,
    status_lines,
)

__all__ = ["CANARY_SPEC", "QUICK_CANARY_SPEC", "CanaryResult", "canary_lines", "run_canary"]

# Sized for the demo's few hundred answers, not a product's traffic (the defaults are 5, 25,
# 50; 50 rated answers per arm; the test tuned for 500): the decision is as valid at these
# sizes, only less sensitive. Latency is not a guardrail here for the reason step 10 does
# not gate on it: LoRA on a CPU engine is slower per token by design.
# reveal_arm: the answers name their arm so that the demo can print what each arm's users
# said (its users are simulated and rate by a fixed rule); a real rollout keeps arms hidden.
CANARY_SPEC = RolloutSpec(steps=[20, 50, 100], guardrails=["error_rate"], min_rated=15,
                          min_rated_per_step=8, min_requests=20, tuned_for=50, max_rated=300,
                          reveal_arm=True)
# The quick profile's (the demo test's): a first step of 30% and 12 rated answers per arm
# before a verdict, at the same alpha. A simulation of the judging (llmops.rollouts.stats.compare
# after every 4 users, 300 draws; the profile's users ask the 10 corrected questions, of which
# production answers none with the fact and the candidate 4 to 6) ends in start, advance,
# promote every time, after a median of 44 to 72 users where CANARY_SPEC takes 60 to 84.
QUICK_CANARY_SPEC = CANARY_SPEC.model_copy(update={
    "steps": [30, 50, 100], "min_rated": 12, "min_rated_per_step": 6})


@dataclass
class CanaryResult:
    """How the canary ended, what each arm's users said, and where its plot is."""

    state: RolloutState
    verdicts: dict[str, list[UserVerdict]] = field(default_factory=dict)
    errors: int = 0
    users: int = 0
    plot: Path | None = None


def run_canary(settings: Settings, http: Any, chain: str, questions: list[dict[str, Any]],
               echo: Callable[[str], None], concurrency: int = 4, max_users: int = 600,
               seed: int = 7, spec: RolloutSpec = CANARY_SPEC) -> CanaryResult:
    """Start a rollout of ``chain@staging`` and send simulated users until it has ended.

    Each decision the gateway takes is printed as it appears. Past ``max_users`` a rollout
    still running is aborted (production keeps all traffic).
    """
    import httpx

    state = start_rollout(chain, "staging", settings, spec=spec, user="demo")
    echo(f"      rollout {state.rollout_id}: {chain}/{state.candidate} against production "
         f"{chain}/{state.production}, steps {', '.join(f'{s}%' for s in spec.steps)}")
    rng = random.Random(seed)
    result = CanaryResult(state, {"production": [], "candidate": []})
    shown = 1  # the start row

    def one(user: int, row: dict[str, Any]) -> UserVerdict | None:
        try:
            return ask_and_judge(http, chain, row, f"canary-user-{user}", source="demo-canary")
        except httpx.HTTPStatusError:
            return None  # the gateway logged it; the error-rate guardrail counts it

    pending: set[Future[UserVerdict | None]] = set()
    checked = 0.0
    with ThreadPoolExecutor(concurrency, thread_name_prefix="canary-user") as pool:
        while True:
            if time.monotonic() - checked >= 1.0:
                checked = time.monotonic()
                state = latest_for_chain(settings.lakehouse, chain) or state
                shown = _echo_new_decisions(settings, state, shown, echo)
            if not state.running or result.users >= max_users:
                break
            while len(pending) < concurrency and result.users < max_users:
                result.users += 1
                pending.add(pool.submit(one, result.users, rng.choice(questions)))
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                _record(result, future.result(), state.rollout_id)
        for future in pending:  # the last users' answers still count, and are rated
            _record(result, future.result(), state.rollout_id)
    if state.running:
        abort_rollout(chain, settings, user="demo",
                      reason=f"the demo's {max_users} simulated users are done")
        state = latest_for_chain(settings.lakehouse, chain) or state
        _echo_new_decisions(settings, state, shown, echo)
    result.state = state
    result.plot = plot_rollout(state, settings.lakehouse,
                               settings.state_dir / "rollouts" / f"{state.rollout_id}.png")
    return result


def _record(result: CanaryResult, verdict: UserVerdict | None, rollout_id: str) -> None:
    if verdict is None:
        result.errors += 1
        return
    versions = verdict.answer.get("versions") or {}
    if versions.get("rollout") == rollout_id:
        result.verdicts[versions["arm"]].append(verdict)


def _echo_new_decisions(settings: Settings, state: RolloutState, shown: int,
                        echo: Callable[[str], None]) -> int:
    """Print the rollout's decisions after the first ``shown`` (not its ``continue`` rows)."""
    rows = history(settings.lakehouse, state.rollout_id)
    for row in rows.iloc[shown:].itertuples(index=False):
        if row.decision != "continue":
            echo(f"      the gateway decided: {row.decision} ({'; '.join(_reasons(row))})")
    return len(rows)


def _reasons(row: Any) -> list[str]:
    import json

    return list(json.loads(row.reasons or "[]"))


def canary_lines(settings: Settings, result: CanaryResult) -> list[str]:
    """The evidence: the arms, the rates with their intervals, and the decisions."""
    return ["      " + line for line in status_lines(result.state, settings.lakehouse,
                                                      changes_only=True)]
