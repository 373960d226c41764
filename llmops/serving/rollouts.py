"""Rollouts at the gateway: which chain version a request gets, and the periodic judging.

The running rollouts are read from the ``rollouts`` Delta table by a background thread every
``gateway.rollout_refresh_s`` (only when the table has a new version), so a rollout started,
advanced or ended by any process reaches every gateway within seconds, with no restart and
no talk between gateways: the arm is a hash of the rollout's id and the subject (the key, and
the end user it names).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from llmops.config import Settings
from llmops.rollouts import RolloutState, assign_arm, evaluate_rollout, running_by_chain

__all__ = ["RolloutRouter", "Routed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Routed:
    """The version a request is served by, and the rollout and arm that chose it."""

    version: str
    rollout_id: str
    arm: str
    reveal: bool = False  # whether the answer may name the arm (the rollout's reveal_arm)


class RolloutRouter:
    """The running rollouts by chain, kept fresh by a daemon thread; ``route`` is lock-free."""

    def __init__(self, settings: Settings, refresh_s: float = 2.0,
                 evaluate_s: float = 0.0) -> None:
        self.settings = settings
        self.refresh_s = refresh_s
        self.evaluate_s = evaluate_s
        self.running: dict[str, RolloutState] = {}
        self._version: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh_failures = 0

    def route(self, chain: str, user: str | None, client: str) -> Routed | None:
        """The arm ``chain``'s running rollout gives this request (None: no rollout).

        The subject is the client (the key, or the address without keys), and where the
        rollout is sticky by user and the request names one, that user *of this key*: a key
        cannot place requests as another key's users.
        """
        state = self.running.get(chain)
        if state is None:
            return None
        subject = (f"{client}/user:{user}" if user and state.spec.sticky_by == "user"
                   else client)
        arm = assign_arm(state.rollout_id, subject, state.share, state.mlflow_run_id)
        return Routed(state.candidate if arm == "candidate" else state.production,
                      state.rollout_id, arm, state.spec.reveal_arm)

    def in_rollout(self, chain: str) -> bool:
        return chain in self.running

    def refresh(self) -> bool:
        """Re-read the running rollouts if the table changed; True when it was read."""
        from llmops.lakehouse import open_table

        delta = open_table(self.settings.lakehouse, "rollouts")
        if delta is None:
            self.running = {}
            return False
        version = delta.version()
        if version == self._version:
            return False
        self.running = running_by_chain(self.settings.lakehouse)
        self._version = version
        return True

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="llmops-rollouts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        import time

        next_judging = time.monotonic() + self.evaluate_s
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep routing on the last known state
                self.refresh_failures += 1
                log.warning("rollouts: cannot read the rollouts table (%s); routing on the "
                            "last known state", exc.__class__.__name__)
                continue
            if self.evaluate_s and time.monotonic() >= next_judging:
                next_judging = time.monotonic() + self.evaluate_s
                self.judge_all()

    def judge_all(self) -> list[Any]:
        """Judge each running rollout that has new evidence (the gateway's own check)."""
        done = []
        for chain in list(self.running):
            try:
                done.append(evaluate_rollout(chain, self.settings, user="gateway",
                                             only_if_new=True))
            except Exception as exc:  # noqa: BLE001 - judged again at the next interval
                log.warning("rollouts: judging %s failed: %s", chain, exc)
        if done:
            self.refresh()
        return done
