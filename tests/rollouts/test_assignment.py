"""Sticky, deterministic arms: the share holds, a user keeps an arm, raising the share only
moves users towards the candidate."""

from __future__ import annotations

import pytest

from llmops.rollouts import assign_arm, bucket


@pytest.mark.parametrize("share", [5, 25, 50])
def test_the_candidate_gets_its_share_of_users(share: int) -> None:
    users = [f"user-{i}" for i in range(20_000)]
    got = sum(assign_arm("docs-qa-1", u, share) == "candidate" for u in users) / len(users)
    # binomial sd at n=20,000 is at most 0.0036: 4 sd of tolerance
    assert abs(got - share / 100) < 0.015


def test_a_user_keeps_an_arm_and_rollouts_differ() -> None:
    arms = [assign_arm("r1", "ana", 25) for _ in range(5)]
    assert len(set(arms)) == 1
    # another rollout draws users afresh: the same users are not always the guinea pigs
    first = {u for u in map(str, range(2000)) if assign_arm("r1", u, 25) == "candidate"}
    second = {u for u in map(str, range(2000)) if assign_arm("r2", u, 25) == "candidate"}
    assert 0.1 < len(first & second) / len(first) < 0.4


def test_raising_the_share_never_moves_a_user_back_to_production() -> None:
    users = [f"u{i}" for i in range(5000)]
    for low, high in ((5, 25), (25, 50), (50, 99)):
        moved_back = [u for u in users if assign_arm("r", u, low) == "candidate"
                      and assign_arm("r", u, high) == "production"]
        assert moved_back == []
    assert all(0 <= bucket("r", u) < 10_000 for u in users)
    assert {assign_arm("r", u, 0) for u in users} == {"production"}
    assert {assign_arm("r", u, 100) for u in users} == {"candidate"}


def test_without_the_rollouts_secret_a_caller_cannot_tell_a_users_arm() -> None:
    """A caller who knows the rollout's id (answers name it) and computes the hash itself
    picks users that land in the candidate no more often than chance: the gateways key the
    hash with the rollout's secret (its MLflow run id), which callers never see."""
    users = [f"user-{i}" for i in range(4000)]
    guessed = [u for u in users if assign_arm("docs-qa-1", u, 50) == "candidate"]
    landed = sum(assign_arm("docs-qa-1", u, 50, "f3a9c2e1d4b5") == "candidate" for u in guessed)
    assert 0.45 < landed / len(guessed) < 0.55  # a coin's odds, not the 100% the guess aimed at
    # with the secret every gateway still agrees, and the share still holds
    assert [assign_arm("docs-qa-1", u, 50, "f3a9c2e1d4b5") for u in users[:50]] == [
        assign_arm("docs-qa-1", u, 50, "f3a9c2e1d4b5") for u in users[:50]]
    share = sum(assign_arm("r", u, 25, "s") == "candidate" for u in users) / len(users)
    assert abs(share - 0.25) < 0.03
