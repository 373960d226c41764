"""Decisions on a rollout never act on a stale state, whatever runs at the same time.

Two writers (a gateway judging, ``llmops rollout abort``) each read the rollout, decide and
append a row. Delta appends never conflict, so without a lock the slower writer appends its
``running`` row after the abort and the rollout runs on: the failure these tests reproduce.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llmops.lakehouse import LakehouseLockTimeout, lakehouse_lock, locks
from llmops.registry import CHAIN_KIND, KIND_TAG
from llmops.rollouts import (
    RolloutSpec,
    abort_rollout,
    evaluate_rollout,
    history,
    lifecycle,
    start_rollout,
)
from llmops.stores import connect


def _two_versions(settings, tmp_path: Path) -> None:
    """A registered chain with versions 1 (@production) and 2, without packaging a chain."""
    from mlflow import MlflowClient

    connect(settings)
    client = MlflowClient()
    client.create_registered_model("qa")
    for _ in range(2):
        v = client.create_model_version("qa", str(tmp_path), tags={KIND_TAG: CHAIN_KIND})
    client.set_registered_model_alias("qa", "production", "1")
    assert str(v.version) == "2"


def test_an_abort_during_a_judgement_is_the_last_word(settings, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _two_versions(settings, tmp_path)
    started = start_rollout("qa", "2", settings, RolloutSpec(steps=[50, 100]))

    reading, release = threading.Event(), threading.Event()
    real = lifecycle.collect_evidence

    def slow_evidence(*args, **kwargs):  # the judge has read the state; it is still running
        reading.set()
        assert release.wait(30), "the test never released the judge"
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "collect_evidence", slow_evidence)
    outcome: dict[str, object] = {}
    judge = threading.Thread(target=lambda: outcome.update(
        judged=evaluate_rollout("qa", settings, user="gateway")))
    abort = threading.Thread(target=lambda: outcome.update(
        aborted=abort_rollout("qa", settings, reason="release freeze")))
    # the abort is seen trying the lock and finding it held (flock on a second descriptor)
    refused = threading.Event()
    real_flock = locks.fcntl.flock

    def watched_flock(fd: int, operation: int) -> None:
        try:
            real_flock(fd, operation)
        except BlockingIOError:
            if threading.current_thread() is abort:
                refused.set()
            raise

    monkeypatch.setattr(locks.fcntl, "flock", watched_flock)
    judge.start()
    assert reading.wait(30), "the judgement never started"
    abort.start()
    assert refused.wait(30), "the abort never met the judgement's lock"
    assert abort.is_alive(), "the abort did not wait for the judgement in progress"
    release.set()
    judge.join(30)
    abort.join(30)
    assert not judge.is_alive() and not abort.is_alive()

    rows = history(settings.lakehouse, started.rollout_id)
    assert list(rows["decision"]) == ["start", "continue", "abort"]
    assert list(rows["status"]) == ["running", "running", "aborted"]
    assert outcome["judged"].judgement.decision == "continue"  # type: ignore[union-attr]
    assert outcome["aborted"].status == "aborted"  # type: ignore[union-attr]
    # the next judgement sees the abort and writes nothing
    again = evaluate_rollout("qa", settings, user="gateway")
    assert again.judgement is None and again.state.status == "aborted"
    assert len(history(settings.lakehouse, started.rollout_id)) == 3


def test_two_starts_at_once_make_one_rollout(settings, tmp_path: Path) -> None:
    _two_versions(settings, tmp_path)
    results: list[object] = []

    def start() -> None:
        try:
            results.append(start_rollout("qa", "2", settings))
        except Exception as exc:  # noqa: BLE001 - the loser's error is what is checked
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(results) == 2 and len(errors) == 1
    assert "already has a running rollout" in str(errors[0])


def test_a_held_lock_times_out_with_its_path_and_dies_with_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from llmops.lakehouse import lakehouse_lock\n"
        f"with lakehouse_lock({str(tmp_path)!r}, 'rollouts'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LakehouseLockTimeout, match=r"\.locks/rollouts\.lock"):
            with lakehouse_lock(tmp_path, "rollouts", timeout_s=0.3):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with lakehouse_lock(tmp_path, "rollouts", timeout_s=5):
            pass  # the kernel released the dead holder's lock
    finally:
        holder.kill()
        holder.wait(10)


def _rated(settings, rollout_id: str, arm: str, client: str, user: str | None,
           ups: list[int]) -> None:
    """Requests of ``arm`` from one subject (client, end user), each rated as ``ups`` says."""
    import uuid
    from datetime import datetime, timedelta, timezone

    from llmops.lakehouse import append_rows, inference_row

    now = datetime.now(timezone.utc)
    log, feedback = [], []
    for i, up in enumerate(ups):
        rid = uuid.uuid4().hex
        ts = now + timedelta(milliseconds=i)
        log.append(inference_row(rid, "/v1/chains/qa/invoke", ts=ts, status=200, latency_ms=5.0,
                                 client=client, end_user=user, rollout_id=rollout_id,
                                 rollout_arm=arm, env="dev"))
        feedback.append({"feedback_id": uuid.uuid4().hex, "request_id": rid, "ts": ts,
                         "rating": up})
    append_rows(settings.lakehouse, "inference_log", log)
    append_rows(settings.lakehouse, "feedback", feedback)


def test_one_subject_adds_at_most_its_cap_of_verdicts(settings, tmp_path: Path) -> None:
    from llmops.rollouts import collect_evidence

    _two_versions(settings, tmp_path)
    started = start_rollout("qa", "2", settings, RolloutSpec(steps=[50, 100],
                                                             max_rated_per_subject=3))
    # one caller stuffs the candidate with 20 thumbs up and production with 20 down
    _rated(settings, started.rollout_id, "candidate", "app", "mallory", [1] * 20)
    _rated(settings, started.rollout_id, "production", "app", "mallory", [-1] * 20)
    # two honest users of the same key, and one of another key named alike
    _rated(settings, started.rollout_id, "candidate", "app", "alice", [-1])
    _rated(settings, started.rollout_id, "production", "app", "bob", [1])
    _rated(settings, started.rollout_id, "candidate", "other", "mallory", [-1, -1])
    evidence = collect_evidence(settings.lakehouse, started)
    cand, prod = evidence["candidate"], evidence["production"]
    # mallory of 'app' counts 3 (her first three, all on the candidate), alice 1, and
    # mallory of 'other' 2 (another key's user of the same name is another subject)
    assert (cand.rated, cand.up) == (6, 3)
    assert (prod.rated, prod.up) == (1, 1)
    assert cand.requests == 23 and prod.requests == 21
    uncapped = collect_evidence(settings.lakehouse, started.moved(
        spec=started.spec.model_copy(update={"max_rated_per_subject": None})))
    assert uncapped["candidate"].rated == 23 and uncapped["production"].rated == 21
    # and one key, however many users it names, adds at most max_rated_per_key
    _rated(settings, started.rollout_id, "candidate", "farm", None, [])
    for i in range(6):
        _rated(settings, started.rollout_id, "candidate", "farm", f"made-up-{i}", [1])
    per_key = collect_evidence(settings.lakehouse, started.moved(
        spec=started.spec.model_copy(update={"max_rated_per_key": 4})))
    # 'app' is cut to 4 of its 5 (mallory's 3, alice's 1), 'farm' to 4 of 6, 'other' keeps 2
    assert (per_key["candidate"].rated, per_key["candidate"].up) == (4 + 4 + 2, 3 + 4)


def test_one_request_rated_many_times_counts_once_its_last_verdict(settings, tmp_path: Path
                                                                    ) -> None:
    import uuid
    from datetime import datetime, timedelta, timezone

    from llmops.lakehouse import append_rows, inference_row
    from llmops.rollouts import collect_evidence

    _two_versions(settings, tmp_path)
    started = start_rollout("qa", "2", settings, RolloutSpec(steps=[50, 100]))
    now = datetime.now(timezone.utc)
    rid = uuid.uuid4().hex
    append_rows(settings.lakehouse, "inference_log", [inference_row(
        rid, "/v1/chains/qa/invoke", ts=now, status=200, latency_ms=5.0, client="app",
        end_user="mallory", rollout_id=started.rollout_id, rollout_arm="candidate", env="dev")])
    # fifty thumbs up on one answer, then a change of mind
    append_rows(settings.lakehouse, "feedback", [
        {"feedback_id": uuid.uuid4().hex, "request_id": rid,
         "ts": now + timedelta(milliseconds=i + 1), "rating": 1 if i < 50 else -1}
        for i in range(51)])
    cand = collect_evidence(settings.lakehouse, started)["candidate"]
    assert (cand.requests, cand.rated, cand.up) == (1, 1, 0)


def test_a_rollout_that_needs_approval_waits_for_a_person(settings, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from llmops.errors import RolloutError
    from llmops.rollouts import approve_rollout, running_by_chain
    from tests.conftest import run_cli

    _two_versions(settings, tmp_path)
    spec = RolloutSpec(steps=[50, 100], guardrails=[], min_rated=20, approval="human",
                       max_rated_per_subject=None)
    started = start_rollout("qa", "2", settings, spec)
    with pytest.raises(RolloutError, match="no rollout awaiting approval"):
        approve_rollout("qa", settings)
    _rated(settings, started.rollout_id, "candidate", "app", None, [1] * 60)
    _rated(settings, started.rollout_id, "production", "app", None, [-1] * 60)
    first = evaluate_rollout("qa", settings, user="gateway")
    assert first.judgement.decision == "await_approval"  # type: ignore[union-attr]
    assert first.state.status == "awaiting_approval" and "llmops rollout approve qa" in (
        first.state.reasons[0])
    # nothing promoted yet, and the split goes on
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("qa", "production").version) == "1"
    assert running_by_chain(settings.lakehouse)["qa"].share == 50
    _rated(settings, started.rollout_id, "candidate", "app", None, [1] * 5)
    again = evaluate_rollout("qa", settings, user="gateway")
    assert (again.judgement.decision, again.state.status) == (  # type: ignore[union-attr]
        "continue", "awaiting_approval")
    out = run_cli("rollout", "approve", "qa", cwd=settings.root)
    assert out.returncode == 0, out.stderr
    assert f"rollout {started.rollout_id} approved: qa@production is version 2" in out.stdout
    assert str(client.get_model_version_by_alias("qa", "production").version) == "2"
    rows = history(settings.lakehouse, started.rollout_id)
    assert list(rows["decision"]) == ["start", "await_approval", "continue", "promote"]
    assert rows.iloc[-1]["status"] == "promoted" and "qa" not in running_by_chain(
        settings.lakehouse)


def test_on_s3_a_judgement_that_lost_to_an_abort_decides_again(
        settings, tmp_path: Path, s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No lock holds on object storage: the judge reads the running rollout, an abort lands
    meanwhile, and the judge's conditional commit is refused; it reads again, sees the abort,
    and writes nothing."""
    settings = settings.model_copy(update={"lakehouse": s3_env})
    _two_versions(settings, tmp_path)
    started = start_rollout("qa", "2", settings, RolloutSpec(steps=[50, 100]))

    real = lifecycle.collect_evidence
    aborted: list[object] = []

    def evidence_while_aborting(*args, **kwargs):
        if not aborted:  # the first attempt has read the running state
            aborted.append(abort_rollout("qa", settings, reason="release freeze"))
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "collect_evidence", evidence_while_aborting)
    judged = evaluate_rollout("qa", settings, user="gateway")
    assert judged.judgement is None and judged.state.status == "aborted"
    rows = history(settings.lakehouse, started.rollout_id)
    assert list(rows["decision"]) == ["start", "abort"]


def test_a_promotion_that_lost_is_undone_unless_the_winner_promoted_too(
        settings, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from llmops.registry import promote

    _two_versions(settings, tmp_path)
    started = start_rollout("qa", "2", settings, RolloutSpec(steps=[50, 100]))
    client = MlflowClient()

    def production() -> str:
        return str(client.get_model_version_by_alias("qa", "production").version)

    promote("qa", "production", 2, settings=settings, user="judge")  # the loser's promotion
    lifecycle._undo_promotion(settings, started, "judge")  # the rollout still runs: undone
    assert production() == "1"
    promote("qa", "production", 2, settings=settings, user="judge")
    winner = lifecycle.RolloutsSnapshot(settings.lakehouse)
    winner.write(started.moved(status="promoted", decision="promote"))
    lifecycle._undo_promotion(settings, started, "judge")  # the winner promoted it too: kept
    assert production() == "2"
