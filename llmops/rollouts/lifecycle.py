"""Start, evaluate and abort rollouts; each decision is a ``rollouts`` row and an MLflow run.

The rollout's own MLflow run (made at the start, named after its id) holds its spec; each
decision that changes something (start, advance, promote, rollback, inconclusive, abort), and
each ``continue`` on new evidence, is a run nested under it with the evidence as metrics.

Each read-decide-write (start, evaluate, approve, abort) reads the ``rollouts`` table at one
version and lands its row only if no other decision landed since (``RolloutsSnapshot``: a
conditional Delta commit, on a folder or on S3); one that lost decides again on the newer
state. So gateways judging at the same time, on one host or several, and ``llmops rollout
abort`` never act on a state another has already changed: one decision per state, and an
abort is never overwritten. On a folder the lakehouse's ``rollouts`` lock also makes
deciders on one host wait for each other rather than retry.
"""

from __future__ import annotations

import getpass
import json
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from llmops.config import Settings
from llmops.errors import LlmopsError, ModelNotFoundError, RolloutError
from llmops.lakehouse import TableChanged, lakehouse_lock
from llmops.registry import CHAIN_KIND, KIND_TAG, model_version, promote
from llmops.rollouts.config import RolloutSpec
from llmops.rollouts.evidence import collect_evidence
from llmops.rollouts.judging import Judgement, evidence_columns, judge
from llmops.rollouts.store import RolloutsSnapshot, RolloutState
from llmops.stores import connect

__all__ = ["Evaluation", "abort_rollout", "approve_rollout", "evaluate_rollout", "start_rollout"]


@dataclass
class Evaluation:
    """What one evaluation decided (``judgement`` is None, and nothing was written, when the
    rollout had ended or nothing was new to judge)."""

    state: RolloutState
    judgement: Judgement | None


T = TypeVar("T")

# how often a decision that lost to another is taken again on the newer state
_ATTEMPTS = 8


def _decide(settings: Settings, decide: Callable[[RolloutsSnapshot], T]) -> T:
    """``decide`` on the latest rollouts, again on a newer state each time another decision
    landed first (see the module docstring)."""
    for attempt in range(_ATTEMPTS):
        with lakehouse_lock(settings.lakehouse, "rollouts"):
            try:
                return decide(RolloutsSnapshot(settings.lakehouse))
            except TableChanged:
                if attempt == _ATTEMPTS - 1:
                    raise RolloutError(
                        f"the rollouts table changed under each of {_ATTEMPTS} attempts to "
                        "decide; try again") from None
        time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
    raise AssertionError("unreachable")


def _who(user: str | None) -> str:
    return user or os.environ.get("LLMOPS_USER") or getpass.getuser()


def _version(chain: str, which: str, settings: Settings) -> Any:
    ref = f"{chain}/{which}" if which.isdigit() else f"{chain}@{which}"
    try:
        found = model_version(ref, settings)
    except ModelNotFoundError as exc:
        raise RolloutError(f"{ref} does not exist: {str(exc).splitlines()[0]}") from exc
    except LlmopsError as exc:
        raise RolloutError(f"'{which}' is not an alias or a version of '{chain}': {exc}") from exc
    if (found.tags or {}).get(KIND_TAG, CHAIN_KIND) != CHAIN_KIND:
        raise RolloutError(f"{found.name}/{found.version} is not a chain")
    return found


def start_rollout(chain: str, candidate: str, settings: Settings,
                  spec: RolloutSpec | None = None, user: str | None = None) -> RolloutState:
    """Send ``spec.shares[0]`` percent of ``chain@production``'s traffic to ``candidate``.

    ``candidate`` is an alias (``staging``) or a version number. Refused, with nothing
    written, when the chain or version does not exist, the candidate is what production
    serves, or the chain already has a running rollout.
    """
    from mlflow import MlflowClient

    spec = spec or RolloutSpec()
    try:
        production = model_version(f"{chain}@production", settings)
    except ModelNotFoundError as exc:
        raise RolloutError(f"'{chain}' has no @production version to compare a candidate "
                           "with: promote one first (llmops eval gate / llmops chains "
                           "promote)") from exc
    cand = _version(chain, candidate, settings)
    if str(cand.version) == str(production.version):
        raise RolloutError(f"the candidate {chain}/{cand.version} is what @production serves: "
                           "a rollout needs two different versions")

    def decide(snap: RolloutsSnapshot) -> RolloutState:
        running = snap.running_by_chain().get(chain)
        if running is not None:
            raise RolloutError(f"'{chain}' already has a running rollout ({running.rollout_id}, "
                               f"{running.share}% to version {running.candidate}): end it first "
                               f"with 'llmops rollout abort {chain}'")
        now = datetime.now(timezone.utc)
        rollout_id = f"{chain}-{now:%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
        exp_id = connect(settings)
        client = MlflowClient()
        run = client.create_run(exp_id, run_name=f"rollout {rollout_id}", tags={
            "llmops.rollout.id": rollout_id, "llmops.rollout.chain": chain,
            "llmops.rollout.production": str(production.version),
            "llmops.rollout.candidate": str(cand.version)})
        client.log_param(run.info.run_id, "spec", spec.model_dump_json()[:6000])
        client.set_terminated(run.info.run_id, "RUNNING")
        state = RolloutState(
            rollout_id=rollout_id, chain=chain, production=str(production.version),
            candidate=str(cand.version), spec=spec, step=0, status="running", decision="start",
            started=now, step_started=now, mlflow_run_id=run.info.run_id,
            reasons=[f"{spec.shares[0]}% of traffic to {chain}/{cand.version}, the rest to "
                     f"production {chain}/{production.version}"])
        try:
            written = snap.write(state, by=_who(user))
        except TableChanged:
            client.set_terminated(run.info.run_id, "KILLED")  # another decision came first
            raise
        _decision_run(client, exp_id, state, None)
        client.set_model_version_tag(chain, str(cand.version), "llmops.rollout.id", rollout_id)
        return written

    return _decide(settings, decide)


def evaluate_rollout(chain: str, settings: Settings, user: str | None = None,
                     only_if_new: bool = False) -> Evaluation:
    """Judge the chain's running rollout on its evidence and carry out the decision.

    ``only_if_new`` (the gateway's periodic check) skips judging when no request or rating
    came in since the last row, so an idle rollout writes nothing.
    """
    from mlflow import MlflowClient

    def decide(snap: RolloutsSnapshot) -> Evaluation:
        state = snap.latest_for_chain(chain)
        if state is None:
            raise RolloutError(f"'{chain}' has no rollout: start one with 'llmops rollout start "
                               f"{chain} --candidate staging'")
        if not state.running:
            return Evaluation(state, None)
        evidence = collect_evidence(settings.lakehouse, state)
        if only_if_new and _unchanged(settings, state, evidence):
            return Evaluation(state, None)
        judgement = judge(state, evidence)
        exp_id = connect(settings)
        client = MlflowClient()
        new = judgement.state
        if judgement.decision == "promote":
            promote(chain, "production", int(state.candidate), settings=settings, user=_who(user))
            try:
                written = snap.write(new, evidence_columns(judgement), by=_who(user))
            except TableChanged:
                _undo_promotion(settings, state, _who(user))
                raise
            client.set_model_version_tag(chain, state.candidate, "llmops.rollout.evidence",
                                         json.dumps(evidence_columns(judgement))[:4000])
        else:
            written = snap.write(new, evidence_columns(judgement), by=_who(user))
        if judgement.decision == "await_approval":
            client.set_model_version_tag(chain, state.candidate, "llmops.rollout.status",
                                         new.status)
        elif judgement.decision == "rollback":
            client.set_model_version_tag(chain, state.candidate, "llmops.rejected",
                                         "rollout " + state.rollout_id + ": "
                                         + "; ".join(judgement.reasons)[:3900])
        if not new.running:
            client.set_model_version_tag(chain, state.candidate, "llmops.rollout.status", new.status)
            client.set_terminated(state.mlflow_run_id, "FINISHED")
        _decision_run(client, exp_id, new, judgement)
        return Evaluation(written, judgement)

    return _decide(settings, decide)


def approve_rollout(chain: str, settings: Settings, user: str | None = None) -> RolloutState:
    """Promote the candidate of a rollout awaiting a person's approval (``approval: human``)."""
    from mlflow import MlflowClient

    def decide(snap: RolloutsSnapshot) -> RolloutState:
        state = snap.latest_for_chain(chain)
        if state is None or state.status != "awaiting_approval":
            where = f"its rollout {state.rollout_id} is {state.status}" if state else "none"
            raise RolloutError(f"'{chain}' has no rollout awaiting approval ({where})")
        who = _who(user)
        promote(chain, "production", int(state.candidate), settings=settings, user=who)
        new = state.moved(status="promoted", decision="promote",
                          reasons=[f"approved by {who}", *state.reasons])
        try:
            written = snap.write(new, by=who)
        except TableChanged:
            _undo_promotion(settings, state, who)
            raise
        exp_id = connect(settings)
        client = MlflowClient()
        client.set_model_version_tag(chain, state.candidate, "llmops.rollout.status", "promoted")
        _decision_run(client, exp_id, new, None)
        client.set_terminated(state.mlflow_run_id, "FINISHED")
        return written

    return _decide(settings, decide)


def abort_rollout(chain: str, settings: Settings, user: str | None = None,
                  reason: str = "") -> RolloutState:
    """End the chain's running rollout now; all traffic returns to production."""
    from mlflow import MlflowClient

    def decide(snap: RolloutsSnapshot) -> RolloutState:
        state = snap.running_by_chain().get(chain)
        if state is None:
            raise RolloutError(f"'{chain}' has no running rollout to abort")
        new = state.moved(status="aborted", decision="abort",
                          reasons=[f"aborted by {_who(user)}" + (f": {reason}" if reason else "")])
        written = snap.write(new, by=_who(user))
        exp_id = connect(settings)
        client = MlflowClient()
        client.set_model_version_tag(chain, state.candidate, "llmops.rollout.status", "aborted")
        _decision_run(client, exp_id, new, None)
        client.set_terminated(state.mlflow_run_id, "KILLED")
        return written

    return _decide(settings, decide)


def _undo_promotion(settings: Settings, state: RolloutState, who: str) -> None:
    """After a promotion whose decision lost to another: production goes back to what it
    served, unless the decision that landed first promoted this candidate too."""
    landed = RolloutsSnapshot(settings.lakehouse).states.get(state.rollout_id)
    if landed is None or landed.status != "promoted":
        promote(state.chain, "production", int(state.production), settings=settings, user=who)


def _unchanged(settings: Settings, state: RolloutState, evidence: dict[str, Any]) -> bool:
    from llmops.lakehouse import read_table

    rows = read_table(settings.lakehouse, "rollouts",
                      columns=["rollout_id", "ts", "prod_requests", "prod_rated",
                               "cand_requests", "cand_rated"], since=state.ts)
    rows = rows[rows["rollout_id"] == state.rollout_id].sort_values("ts")
    if len(rows) == 0:
        return False
    last = rows.iloc[-1]
    seen = (last["prod_requests"], last["prod_rated"], last["cand_requests"], last["cand_rated"])
    now = (evidence["production"].requests, evidence["production"].rated,
           evidence["candidate"].requests, evidence["candidate"].rated)
    return all(a == a and int(a) == b for a, b in zip(seen, now, strict=True))


def _decision_run(client: Any, exp_id: str, state: RolloutState,
                  judgement: Judgement | None) -> None:
    """One decision as an MLflow run nested under the rollout's run."""
    from mlflow.entities import Metric

    run = client.create_run(exp_id, run_name=f"{state.decision} {state.rollout_id}", tags={
        "mlflow.parentRunId": state.mlflow_run_id, "llmops.rollout.id": state.rollout_id,
        "llmops.rollout.decision": state.decision, "llmops.rollout.status": state.status,
        "llmops.rollout.share": str(state.share),
        "llmops.rollout.reasons": json.dumps(state.reasons)[:4000]})
    if judgement is not None:
        stamp = int(datetime.now(timezone.utc).timestamp() * 1000)
        metrics = [Metric(k, float(v), stamp, 0)
                   for k, v in evidence_columns(judgement).items() if v is not None]
        client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id, "FINISHED")
