"""Which arm of a rollout a user sees: a hash, so every gateway process agrees without talking.

A user's bucket (0-9999) is a keyed hash (HMAC-SHA256) of the rollout's id and the user,
keyed with a secret every gateway reads from the rollouts table (the rollout's MLflow run id,
never shown to callers): a caller who knows the rollout's id still cannot work out which
arm a user name lands in, and so cannot pick the arm its requests go to. The candidate gets
the buckets below its share, so a user in the candidate arm at 5% stays in it at 25% and 50%:
raising the share only moves users from production to the candidate, never back.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

__all__ = ["BUCKETS", "Arm", "assign_arm", "bucket"]

BUCKETS = 10_000
Arm = Literal["production", "candidate"]


def bucket(rollout_id: str, subject: str, secret: str = "") -> int:
    """The subject's bucket in this rollout, uniform in ``[0, BUCKETS)`` (keyed by ``secret``;
    without one, a plain hash anyone can compute)."""
    message = f"{rollout_id}\x00{subject}".encode()
    digest = (hmac.new(secret.encode(), message, hashlib.sha256).digest() if secret
              else hashlib.sha256(message).digest())
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign_arm(rollout_id: str, subject: str, share: int, secret: str = "") -> Arm:
    """``candidate`` for ``share`` percent of subjects, the same ones every time."""
    return ("candidate" if bucket(rollout_id, subject, secret) < share * BUCKETS // 100
            else "production")
