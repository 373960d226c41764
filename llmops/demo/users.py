"""Simulated users for the demo: they ask through the gateway and judge by the reference fact.

A simulation, said as such: each user knows a golden row's reference answer and
key fact, gives a thumbs up (and a 5) when the answer holds the fact, else a
thumbs down (and a 2) with the reference answer as their correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops.evals.scorers import fact_hit

__all__ = ["UserVerdict", "ask_and_judge"]


@dataclass(frozen=True)
class UserVerdict:
    """What one simulated user asked, got and said."""

    row: dict[str, Any]
    answer: dict[str, Any]
    good: bool


def ask_and_judge(http: Any, chain: str, row: dict[str, Any], user: str,
                  source: str = "demo") -> UserVerdict:
    """Ask ``chain`` the row's question through the gateway as ``user`` (the end user a
    rollout's arm is sticky for), then send the user's feedback."""
    reply = http.post(f"/v1/chains/{chain}/invoke",
                      json={"question": row["question"], "user": user})
    reply.raise_for_status()
    answer = reply.json()
    good = bool(fact_hit(answer["answer"], row["fact"]))
    feedback: dict[str, Any] = {"request_id": answer["request_id"], "rating": 1 if good else -1,
                                "score": 5 if good else 2, "user": user, "source": source}
    if not good:
        feedback["correction"] = row["expected"]
    http.post("/v1/feedback", json=feedback).raise_for_status()
    return UserVerdict(row, answer, good)
