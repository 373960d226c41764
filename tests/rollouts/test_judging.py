"""The decision table, on made-up evidence (the statistics themselves: test_stats.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from llmops.rollouts import ArmEvidence, RolloutSpec, RolloutState, judge

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _state(**spec) -> RolloutState:
    return RolloutState(rollout_id="r", chain="c", production="1", candidate="2",
                        spec=RolloutSpec(**spec), step=0, status="running", decision="start",
                        started=T0, step_started=T0)


def _arm(rated: int, up: int, requests: int | None = None, errors: int = 0,
         latency: float = 100.0, step_rated: int | None = None) -> ArmEvidence:
    requests = requests if requests is not None else max(rated, 1)
    return ArmEvidence(requests=requests, errors=errors, rated=rated, up=up,
                       step_rated=rated if step_rated is None else step_rated,
                       latencies_ms=[latency] * (requests - errors))


def test_too_few_ratings_keep_collecting_and_say_how_many() -> None:
    j = judge(_state(min_rated=50, min_rated_per_step=1000),
              {"production": _arm(10, 9), "candidate": _arm(10, 1)})
    assert j.decision == "continue" and j.state.running
    assert "10/50 rated answers of the candidate" in j.reasons[0]


def test_a_clearly_better_candidate_is_promoted_and_a_worse_one_rolled_back() -> None:
    state = _state(min_rated=50, guardrails=[])
    better = judge(state, {"production": _arm(1500, 600), "candidate": _arm(1500, 1050)})
    assert (better.decision, better.state.status) == ("promote", "promoted")
    assert better.comparison.low > 0
    worse = judge(state, {"production": _arm(1500, 1050), "candidate": _arm(1500, 600)})
    assert (worse.decision, worse.state.status) == ("rollback", "rolled_back")
    assert "users like it less" in worse.reasons[0]


def test_no_difference_advances_through_the_steps_then_ends_inconclusive() -> None:
    state = _state(steps=[5, 25, 100], min_rated=20, min_rated_per_step=30, max_rated=400,
                   guardrails=[])
    even = {"production": _arm(100, 50), "candidate": _arm(40, 20)}
    j = judge(state, even, now=T0 + timedelta(minutes=5))
    assert j.decision == "advance" and j.state.step == 1 and j.state.share == 25
    assert j.state.step_started == T0 + timedelta(minutes=5)
    # at the last share it waits for evidence, and stops at max_rated without any
    at_last = j.state
    assert judge(at_last, even).decision == "continue"
    done = judge(at_last, {"production": _arm(400, 200), "candidate": _arm(400, 200)})
    assert (done.decision, done.state.status, done.state.share) == (
        "inconclusive", "inconclusive", 0)
    # a step only advances on ratings made at that step
    slow = {"production": _arm(100, 50), "candidate": _arm(40, 20, step_rated=5)}
    assert judge(state, slow).decision == "continue"


def test_guardrails_roll_back_on_errors_and_latency() -> None:
    state = _state(min_requests=50, error_rate_margin=0.02, latency_p95_ratio=1.5)
    errors = judge(state, {"production": _arm(10, 5, requests=400, errors=2),
                           "candidate": _arm(10, 5, requests=400, errors=120)})
    assert errors.decision == "rollback" and errors.guardrails["error_rate"] == "breached"
    assert "error rate 0.300" in errors.reasons[0]
    slow = judge(state, {"production": _arm(10, 5, requests=200, latency=100),
                         "candidate": _arm(10, 5, requests=200, latency=400)})
    assert slow.decision == "rollback" and slow.guardrails["latency_p95"] == "breached"
    fine = judge(state, {"production": _arm(10, 5, requests=200, latency=100),
                         "candidate": _arm(10, 5, requests=200, latency=120)})
    assert fine.decision == "continue" and set(fine.guardrails.values()) == {"ok"}


@pytest.mark.parametrize("steps, message", [
    ([0, 50], "above 0"), ([5, 150], "at most 100"), ([50, 25], "must increase"),
    ([100], "less than 100"), ([], "at least one step"),
])
def test_bad_steps_are_refused_with_a_reason(steps: list[int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RolloutSpec(steps=steps)


def test_a_final_100_is_the_promotion_not_a_split() -> None:
    assert RolloutSpec(steps=[5, 25, 50, 100]).shares == [5, 25, 50]
    assert RolloutSpec(steps=[10, 30]).shares == [10, 30]
