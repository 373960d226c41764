"""Rollouts live in the ``rollouts`` Delta table: one row per event, the last row is the state.

Nothing else holds a rollout's state, so a restarted gateway, a second gateway process and
``llmops rollout status`` all read the same thing, and the table is the audit trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from llmops.lakehouse import TableAppender, append_rows, read_table
from llmops.lakehouse.location import LakehouseRoot
from llmops.rollouts.config import RolloutSpec

__all__ = ["ENDED", "RolloutState", "RolloutsSnapshot", "all_states", "history", "latest_for_chain",
           "running_by_chain", "states_from_rows", "write_state"]

# the app id of every decision's commit: a decision lands only if no other landed since the
# version it was read from (TableAppender.append's if_unchanged)
DECISION_APP_ID = "llmops.rollouts"

# a rollout's status: running, or how it ended
ENDED = ("promoted", "rolled_back", "aborted", "inconclusive")


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout stands: its arms, its step, its status and the last decision."""

    rollout_id: str
    chain: str
    production: str  # the version production served when the rollout started
    candidate: str
    spec: RolloutSpec
    step: int  # index into spec.shares
    status: str
    decision: str
    started: datetime
    step_started: datetime
    reasons: list[str] = field(default_factory=list)
    mlflow_run_id: str = ""
    ts: datetime | None = None

    @property
    def running(self) -> bool:
        """Still splitting traffic: judged as it goes, or waiting for a person to approve."""
        return self.status in ("running", "awaiting_approval")

    @property
    def share(self) -> int:
        """The candidate's share of traffic now (0 once the rollout has ended)."""
        return self.spec.shares[self.step] if self.running else 0

    def moved(self, **changes: Any) -> RolloutState:
        return replace(self, **changes)


def _row(state: RolloutState, evidence: dict[str, Any] | None, by: str,
         now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "rollout_id": state.rollout_id, "ts": now, "chain": state.chain,
        "production": state.production, "candidate": state.candidate, "step": state.step,
        "share": state.share, "status": state.status, "decision": state.decision,
        "reasons": json.dumps(state.reasons), "step_started": state.step_started,
        "spec": state.spec.model_dump_json(), "mlflow_run_id": state.mlflow_run_id, "by": by,
    }
    row.update(evidence or {})
    return row


def write_state(lakehouse: LakehouseRoot, state: RolloutState,
                evidence: dict[str, Any] | None = None, by: str = "") -> RolloutState:
    """Append ``state`` (and the evidence behind its decision) as the rollout's newest row,
    unconditionally (a decision goes through ``RolloutsSnapshot.write``)."""
    now = datetime.now(timezone.utc)
    append_rows(lakehouse, "rollouts", [_row(state, evidence, by, now)])
    return state.moved(ts=now)


class RolloutsSnapshot:
    """The rollouts table at one version: decided on, then appended to only if no other
    decision landed since (``TableChanged`` otherwise, and nothing is written).

    This is what keeps two deciders apart wherever the table lives (a folder or S3, one host
    or several): two gateways judging one rollout, or one judging while ``llmops rollout
    abort`` ends it, cannot both land a decision taken on the same state.
    """

    def __init__(self, lakehouse: LakehouseRoot) -> None:
        self._table = TableAppender(lakehouse, "rollouts")
        self.version = self._table.refresh()
        self.states = states_from_rows(self._table.read(columns=_COLUMNS))

    def running_by_chain(self) -> dict[str, RolloutState]:
        return {s.chain: s for s in self.states.values() if s.running}

    def latest_for_chain(self, chain: str) -> RolloutState | None:
        return _latest([s for s in self.states.values() if s.chain == chain])

    def write(self, state: RolloutState, evidence: dict[str, Any] | None = None,
              by: str = "") -> RolloutState:
        now = datetime.now(timezone.utc)
        self._table.append([_row(state, evidence, by, now)], if_unchanged=DECISION_APP_ID)
        return state.moved(ts=now)


_COLUMNS = ["rollout_id", "ts", "chain", "production", "candidate", "step", "status", "decision",
            "reasons", "step_started", "spec", "mlflow_run_id"]


def states_from_rows(rows: Any) -> dict[str, RolloutState]:
    """Each rollout's state (its last row) from ``rollouts`` rows, by rollout id."""
    out: dict[str, RolloutState] = {}
    if rows is None or len(rows) == 0:
        return out
    rows = rows.sort_values("ts", kind="stable")
    first = rows.groupby("rollout_id")["ts"].min()
    for rid, last in rows.groupby("rollout_id").tail(1).set_index("rollout_id").iterrows():
        out[str(rid)] = RolloutState(
            rollout_id=str(rid), chain=last["chain"], production=last["production"],
            candidate=last["candidate"], spec=RolloutSpec.model_validate_json(last["spec"]),
            step=int(last["step"]), status=last["status"], decision=last["decision"],
            started=first[rid].to_pydatetime(), step_started=last["step_started"].to_pydatetime(),
            reasons=json.loads(last["reasons"] or "[]"), mlflow_run_id=last["mlflow_run_id"] or "",
            ts=last["ts"].to_pydatetime())
    return out


def all_states(lakehouse: LakehouseRoot) -> dict[str, RolloutState]:
    return states_from_rows(read_table(lakehouse, "rollouts", columns=_COLUMNS))


def running_by_chain(lakehouse: LakehouseRoot) -> dict[str, RolloutState]:
    """The running rollout of each chain that has one."""
    return {s.chain: s for s in all_states(lakehouse).values() if s.running}


def latest_for_chain(lakehouse: LakehouseRoot, chain: str) -> RolloutState | None:
    """The chain's running rollout, else its most recent one (None: it never had one)."""
    return _latest([s for s in all_states(lakehouse).values() if s.chain == chain])


def _latest(mine: list[RolloutState]) -> RolloutState | None:
    if not mine:
        return None
    running = [s for s in mine if s.running]
    return running[0] if running else max(mine, key=lambda s: s.started)


def history(lakehouse: LakehouseRoot, rollout_id: str) -> Any:
    """Every row of one rollout, oldest first (a DataFrame)."""
    rows = read_table(lakehouse, "rollouts")
    return rows[rows["rollout_id"] == rollout_id].sort_values("ts", kind="stable")
