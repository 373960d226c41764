"""Which arm of a rollout a user sees: a hash, so every gateway process agrees without talking.

A user's bucket (0-9999) is a hash of the rollout's id and the user. The candidate gets the
buckets below its share, so a user in the candidate arm at 5% stays in it at 25% and 50%:
raising the share only moves users from production to the candidate, never back.
"""

from __future__ import annotations

import hashlib
from typing import Literal

__all__ = ["BUCKETS", "Arm", "assign_arm", "bucket"]

BUCKETS = 10_000
Arm = Literal["production", "candidate"]


def bucket(rollout_id: str, subject: str) -> int:
    """The subject's bucket in this rollout, uniform in ``[0, BUCKETS)``."""
    digest = hashlib.sha256(f"{rollout_id}\x00{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign_arm(rollout_id: str, subject: str, share: int) -> Arm:
    """``candidate`` for ``share`` percent of subjects, the same ones every time."""
    return "candidate" if bucket(rollout_id, subject) < share * BUCKETS // 100 else "production"
