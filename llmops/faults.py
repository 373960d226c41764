"""Fault injection for crash tests: kill this process at a named point of a job.

``LLMOPS_FAULT_KILL_AT=point:n`` makes the ``n``-th call of ``fault_point(point)``
send SIGKILL to the process itself: a real ``kill -9`` at an exact place, so a
test can crash a job at many different points and check what a rerun does.
Unset (always, outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["fault_point"]

_hits: Counter[str] = Counter()


def fault_point(name: str) -> None:
    """Die here with SIGKILL if ``LLMOPS_FAULT_KILL_AT`` names this point and hit count."""
    spec = os.environ.get("LLMOPS_FAULT_KILL_AT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
