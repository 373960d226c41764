"""The evidence on a rollout's arms, read from ``inference_log`` and ``feedback``.

A rated answer is a logged request of the rollout with feedback: its last thumbs up or down,
or, where no thumbs were given, a score of 4-5 (up) or 1-2 (down); a 3 is not counted. One
subject (a key, with the end user it names) adds at most ``spec.max_rated_per_subject`` rated
answers, its first, and one key, all its end users together, ``spec.max_rated_per_key``. An
error is a request the gateway answered with a 5xx (an engine's 4xx is the client's error,
logged as such).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.lakehouse import read_table
from llmops.rollouts.store import RolloutState

__all__ = ["ARMS", "ArmEvidence", "collect_evidence", "thumbs"]

ARMS = ("production", "candidate")


@dataclass(frozen=True)
class ArmEvidence:
    """One arm's traffic, errors, latencies and rated answers (overall and at this step)."""

    requests: int = 0
    errors: int = 0
    rated: int = 0
    up: int = 0
    step_rated: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def latency_p95_ms(self) -> float | None:
        if not self.latencies_ms:
            return None
        import numpy as np

        return float(np.percentile(self.latencies_ms, 95))

    @property
    def rate(self) -> float | None:
        return self.up / self.rated if self.rated else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def thumbs(rating: Any, score: Any) -> int | None:
    """+1 (up), -1 (down) or None (no verdict) for one piece of feedback."""
    if rating is not None and rating == rating:  # NaN from pandas is no rating
        return 1 if rating > 0 else -1
    if score is not None and score == score:
        if score >= 4:
            return 1
        if score <= 2:
            return -1
    return None


def _capped(log: Any, verdicts: dict[str, int], per_subject: int | None,
            per_key: int | None) -> dict[str, int]:
    """The verdicts that count, in time order: each subject's (key and end user) first
    ``per_subject``, and each key's (all its end users together) first ``per_key``."""
    if per_subject is None and per_key is None:
        return verdicts
    kept: dict[str, int] = {}
    by_subject: dict[tuple[str, str], int] = {}
    by_key: dict[str, int] = {}
    rows = log.sort_values("ts", kind="stable")
    for rid, client, user in zip(rows["request_id"], rows["client"], rows["end_user"],
                                 strict=True):
        verdict = verdicts.get(rid)
        if verdict is None:
            continue
        key = str(client)
        subject = (key, user if isinstance(user, str) else "")
        if per_subject is not None and by_subject.get(subject, 0) >= per_subject:
            continue
        if per_key is not None and by_key.get(key, 0) >= per_key:
            continue
        by_subject[subject] = by_subject.get(subject, 0) + 1
        by_key[key] = by_key.get(key, 0) + 1
        kept[rid] = verdict
    return kept


def collect_evidence(lakehouse: Path, state: RolloutState) -> dict[str, ArmEvidence]:
    """Each arm's evidence since the rollout started (requests of this rollout only)."""
    log = read_table(lakehouse, "inference_log",
                     columns=["request_id", "ts", "status", "latency_ms", "rollout_id",
                              "rollout_arm", "client", "end_user"], since=state.started)
    log = log[log["rollout_id"] == state.rollout_id]
    if len(log) == 0:
        return {arm: ArmEvidence() for arm in ARMS}
    feedback = read_table(lakehouse, "feedback", columns=["request_id", "ts", "rating", "score"],
                          since=state.started, request_ids=log["request_id"].tolist())
    verdicts: dict[str, int] = {}
    for row in feedback.sort_values("ts", kind="stable").itertuples(index=False):
        verdict = thumbs(row.rating, row.score)
        if verdict is not None:
            verdicts[row.request_id] = verdict  # the last verdict on a request counts
    out = {}
    step_start = state.step_started
    verdicts = _capped(log, verdicts, state.spec.max_rated_per_subject,
                       state.spec.max_rated_per_key)
    for arm in ARMS:
        mine = log[log["rollout_arm"] == arm]
        errors = mine["status"] >= 500
        rated = up = step_rated = 0
        for rid, ts in zip(mine["request_id"], mine["ts"], strict=True):
            verdict = verdicts.get(rid)
            if verdict is None:
                continue
            rated += 1
            up += verdict > 0
            step_rated += ts >= step_start
        out[arm] = ArmEvidence(
            requests=len(mine), errors=int(errors.sum()), rated=rated, up=int(up),
            step_rated=int(step_rated),
            latencies_ms=[float(x) for x in mine.loc[~errors, "latency_ms"].dropna()])
    return out
