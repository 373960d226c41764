"""Rollouts through real ``llmops serve`` processes: routing, stickiness across gateways and
restarts, judging by the gateway on user feedback, promotion and rollback, bad input.

The users are simulated (the test rates answers by arm): what is under test is the loop
from assignment to decision, not the model's quality.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from llmops.chains import log_chain, promote
from llmops.errors import RolloutError
from llmops.indexing import update_index
from llmops.prompts import set_alias, sync_prompts
from llmops.rollouts import RolloutSpec, abort_rollout, assign_arm, latest_for_chain, start_rollout
from tests.conftest import free_port, run_cli
from tests.serving.conftest import GatewayProcess, read_rows, write_endpoint


def _ask(h: httpx.Client, user: str) -> dict:
    resp = h.post("/v1/chains/docs-qa/invoke", json={"question": "What is a rollout?",
                                                       "user": user})
    assert resp.status_code in (200, 503), resp.text
    return {"status": resp.status_code, "rid": resp.headers["x-request-id"],
            **(resp.json()["versions"] if resp.status_code == 200 else {})}


def _ask_all(h: httpx.Client, users: list[str]) -> dict[str, dict]:
    """Each user asks once, four at a time (as users do: at once)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(users, pool.map(lambda u: _ask(h, u), users), strict=True))


def _ask_all_at(clients: list[httpx.Client], users: list[str]) -> list[dict]:
    """``users[i]`` asks through ``clients[i]``, all at once."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(_ask, clients, users))


def _until(what: str, check, timeout: float = 30.0, why=lambda: ""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout:.0f} s: {what}\n{why()}")


def _why(settings, gateway) -> str:
    """The rollout's last decision and the judging gateway's log, for a failed wait."""
    state = latest_for_chain(settings.lakehouse, "docs-qa")
    said = f"last decision: {state.decision} {state.status} {state.reasons}" if state else ""
    return f"{said}\ngateway log (end):\n{gateway.output()[-3000:]}"


def _rollout_rows(settings, decision: str | None = None) -> int:
    rows = read_rows(settings.root, "rollouts")
    return len(rows if decision is None or rows.empty else rows[rows["decision"] == decision])


@pytest.fixture
def routing_gateway(project: Path, engine_url: str, tmp_path: Path):
    """Start (not wait for) a gateway that routes rollouts and judges none. Each reads its own
    endpoint file, so it can start while a ``start_gateway`` one (those share the project's
    serving/endpoint.yaml) is still reading its own."""
    started: list[GatewayProcess] = []

    def start(env: dict[str, str] | None = None) -> GatewayProcess:
        port = free_port()
        folder = tmp_path / f"routing-{port}"
        folder.mkdir()
        write_endpoint(folder, engine_url, port, rollout_refresh_s=0.5, rollout_evaluate_s=0)
        gw = GatewayProcess(project, port, env,
                            args=("--config", str(folder / "serving" / "endpoint.yaml")))
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.mark.slow
def test_a_rollout_from_start_to_promotion_and_to_rollback(project: Path, settings, start_gateway,
                                                           routing_gateway, docs_indexed) -> None:
    from mlflow import MlflowClient

    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    chains = project / "chains"
    v1 = log_chain(chains / "docs_qa.py", alias="staging", settings=settings).version
    promote("docs-qa", "production", v1, settings=settings)
    # the candidate serves an optimized prompt version (llmops prompts optimize's kind: the
    # same template carrying demonstrations from feedback, retrieved per question)
    from llmops.optimize import with_demonstrations
    from llmops.prompts import get_version, register_version, to_template

    shown = [{"question": "How do I promote a chain?", "answer": "Run llmops chains promote."}]
    optimized = register_version(with_demonstrations(
        to_template(get_version("qa/1", settings)), shown, 1, 0.5, settings.index.embedder),
        {"llmops.optimizer": "fewshot"}, "demonstrations from feedback", settings)
    v2 = log_chain(chains / "docs_qa.py", alias="staging", settings=settings,
                   prompt=f"qa/{optimized}").version

    # bad input: a clear error, nothing written
    for chain, candidate, message in (("nope", "staging", "no @production version"),
                                      ("docs-qa", "99", "docs-qa/99 does not exist"),
                                      ("docs-qa", "canary", "docs-qa@canary does not exist"),
                                      ("docs-qa", str(v1), "is what @production serves")):
        with pytest.raises(RolloutError, match=message):
            start_rollout(chain, candidate, settings)
    assert _rollout_rows(settings) == 0
    bad = run_cli("rollout", "start", "docs-qa", "--candidate", "staging", "--steps", "5,120",
                  cwd=project)
    assert bad.returncode == 1 and "at most 100" in bad.stderr and _rollout_rows(settings) == 0

    # two gateways, started side by side; A judges its rollouts every second, B only routes
    a = start_gateway(rollout_refresh_s=0.5, rollout_evaluate_s=1, wait=False)
    b = routing_gateway()
    a.wait_ready(), b.wait_ready()
    ha, hb = (httpx.Client(base_url=g.url, timeout=120) for g in (a, b))
    # each loads docs-qa@production at its first request: both at once
    assert not any("rollout" in got for got in _ask_all_at(
        [ha, hb], ["warm-up-a", "warm-up-b"]))

    # (the answers name their arm here, so the test can check the routing; by default a
    # rollout's arms are hidden: test_a_rollouts_arms_are_hidden_and_its_alias_kept)
    spec = RolloutSpec(steps=[50, 100], min_rated=10, min_rated_per_step=10,
                       guardrails=["error_rate"], min_requests=10, tuned_for=50,
                       reveal_arm=True)
    started = start_rollout("docs-qa", "staging", settings, spec)
    assert (started.production, started.candidate, started.share) == (str(v1), str(v2), 50)
    with pytest.raises(RolloutError, match="already has a running rollout"):
        start_rollout("docs-qa", "staging", settings, spec)
    # (A may have judged the new rollout already: its rows are not starts)
    assert _rollout_rows(settings, "start") == 1
    # a gateway started after the rollout began (B restarted, below): it starts while A and B
    # serve, and knows no more than the rollouts table tells it
    b2 = routing_gateway()
    # picked up by both running gateways within seconds, without a restart
    for h in (ha, hb):
        _until("the gateway routes by the rollout", lambda h=h: "rollout" in _ask(h, "probe"))

    users = [f"user-{i}" for i in range(30)]
    on_a = _ask_all(ha, users)
    arms = {u: v["arm"] for u, v in on_a.items()}
    assert all(v["rollout"] == started.rollout_id for v in on_a.values())
    assert all(v["chain"] == f"docs-qa/{v2 if arms[u] == 'candidate' else v1}"
               for u, v in on_a.items())
    # 50% of 30 users: binomial sd 2.7, so 6..24 is beyond 3 sd either way
    assert 6 <= sum(a == "candidate" for a in arms.values()) <= 24
    # another gateway process, and a restarted one, put every user on the same arm
    assert {u: v["arm"] for u, v in _ask_all(hb, users).items()} == arms
    b.stop()
    hb2 = httpx.Client(base_url=b2.wait_ready().url, timeout=120)
    on_b2 = _ask_all(hb2, users[:10])
    assert {u: v.get("arm") for u, v in on_b2.items()} == {u: arms[u] for u in users[:10]}, (
        on_b2, _why(settings, b2))  # a 503 there (no arm): the restarted gateway says why

    # The arms are a hash of (rollout id, user) and the rollout id is random, so 30 users can
    # leave an arm below min_rated (10), and then no verdict is possible: about 4% of runs.
    # More users until each arm has 12 makes the promotion certain, whatever the draw.
    extra = 30
    while min(sum(v["arm"] == arm for v in on_a.values())
              for arm in ("production", "candidate")) < 12:
        on_a[f"user-{extra}"] = _ask(ha, f"user-{extra}")
        arms[f"user-{extra}"] = on_a[f"user-{extra}"]["arm"]
        extra += 1
        assert extra < 200, "the assignment is not a 50% split"

    # simulated users like the candidate's answers and not production's
    for u, v in on_a.items():
        resp = ha.post("/v1/feedback", json={"request_id": v["rid"],
                                             "rating": 1 if arms[u] == "candidate" else -1})
        assert resp.status_code == 200
    promoted = _until("gateway A promotes the candidate", lambda: (
        s := latest_for_chain(settings.lakehouse, "docs-qa")) and not s.running and s, 60,
        lambda: _why(settings, a))
    assert promoted.status == "promoted" and promoted.decision == "promote"
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("docs-qa", "production").version) == str(v2)
    tags = client.get_model_version("docs-qa", str(v2)).tags
    assert tags["llmops.rollout.status"] == "promoted" and "llmops.rollout.evidence" in tags
    assert tags["llmops.promoted.production.from_version"] == str(v1)
    rows = read_rows(project, "rollouts")
    assert list(rows.sort_values("ts")["decision"])[-1] == "promote"
    last = rows.sort_values("ts").iloc[-1]
    assert last["cand_up"] == last["cand_rated"] >= 10 and last["prod_up"] == 0
    assert last["diff_low"] > 0
    runs = client.search_runs([promoted.mlflow_run_id and
                               client.get_run(promoted.mlflow_run_id).info.experiment_id],
                              f"tags.`llmops.rollout.id` = '{promoted.rollout_id}'")
    assert {r.data.tags.get("llmops.rollout.decision") for r in runs} >= {"start", "promote"}
    analysis = ha.get("/v1/rollouts/docs-qa/analysis").json()
    assert analysis["phase"] == "successful" and analysis["rollout_id"] == started.rollout_id
    assert ha.get("/v1/rollouts/nope/analysis").status_code == 404
    # the log ties every answer of the rollout to its arm
    rids = {v["rid"]: arms[u] for u, v in on_a.items()}

    def logged_answers():
        rows = read_rows(project, "inference_log")
        rows = rows[rows["request_id"].isin(list(rids))]
        return rows if len(rows) == len(rids) else None

    mine = _until("gateway A logs every answer of the rollout",
                  lambda: (rows := logged_answers()) is not None and [rows], 30)[0]
    assert set(mine["rollout_id"]) == {started.rollout_id}
    assert dict(zip(mine["request_id"], mine["rollout_arm"], strict=True)) == rids
    assert set(mine["rollout_arm"]) == {"production", "candidate"}
    # traffic is back on production (now v2) with no rollout
    _until("the gateway stops routing", lambda: "rollout" not in _ask(ha, "user-0"), 10)

    # a candidate that fails is rolled back on its error rate: its collection is gone (one
    # short page indexed into it, so that the chain can be logged, then deleted)
    (project / "scratch_docs").mkdir()
    (project / "scratch_docs" / "rollouts.md").write_text(
        "# Rollouts\n\nA rollout sends a share of the traffic to a candidate chain version.\n")
    update_index(settings, source=project / "scratch_docs", collection="scratch",
                 progress=False, record=False)
    broken = (chains / "docs_qa.py").read_text().replace('"collection": "docs"',
                                                          '"collection": "scratch"')
    (chains / "docs_qa_scratch.py").write_text(broken)
    v3 = log_chain(chains / "docs_qa_scratch.py", name="docs-qa", alias="staging",
                   settings=settings).version
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chromadb.PersistentClient(path=str(settings.chroma.path), settings=ChromaSettings(
        anonymized_telemetry=False)).delete_collection("scratch")
    second = start_rollout("docs-qa", "staging", settings, spec)
    _until("the gateway routes by the new rollout",
           # a candidate-arm answer is a 503 here (no versions): production users show it
           lambda: any(_ask(ha, f"probe-{i}").get("rollout") == second.rollout_id
                       for i in range(12)), 20)
    # users picked by the arm the router gives them, so that each arm gets exactly the
    # guardrail's min_requests new requests
    by_arm: dict[str, list[str]] = {"production": [], "candidate": []}
    for i in range(1000):
        # the subject: the client (no keys here: the address), and the user it names
        # (the assignment's key is the rollout's MLflow run id, read here from the table as
        # the gateways read it; a caller never sees it)
        arm = assign_arm(second.rollout_id, f"addr:127.0.0.1/user:user-{i}", second.share,
                         second.mlflow_run_id)
        if len(by_arm[arm]) < spec.min_requests:
            by_arm[arm].append(f"user-{i}")
    asked = _ask_all(ha, by_arm["production"] + by_arm["candidate"])
    assert {asked[u].get("arm") for u in by_arm["production"]} == {"production"}
    rolled = _until("gateway A rolls the candidate back", lambda: (
        s := latest_for_chain(settings.lakehouse, "docs-qa")) and not s.running and s, 60,
        lambda: _why(settings, a))
    assert rolled.status == "rolled_back" and "error rate" in rolled.reasons[0]
    assert str(client.get_model_version_by_alias("docs-qa", "production").version) == str(v2)
    assert "error rate" in client.get_model_version("docs-qa", str(v3)).tags["llmops.rejected"]
    assert ha.get("/v1/rollouts/docs-qa/analysis").json()["phase"] == "failed"

    shown = run_cli("rollout", "status", "docs-qa", "--plot", str(project / "r.png"),
                    cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert f"rollout {second.rollout_id}" in shown.stdout and "rolled_back" in shown.stdout
    assert "candidate" in shown.stdout and "decisions:" in shown.stdout
    assert (project / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the CLI aborts a running rollout; its reason is kept
    third = start_rollout("docs-qa", str(v1), settings,
                          spec.model_copy(update={"reveal_arm": False}))
    # by default a rollout's arms are hidden: an answer names the rollout, no arm or version
    hidden = _until("the gateway routes by the third rollout", lambda: (
        got := _ask(ha, "hidden-user")).get("rollout") == third.rollout_id and got, 20)
    assert {k: v for k, v in hidden.items() if k not in ("status", "rid")} == {
        "chain": "docs-qa", "rollout": third.rollout_id}
    # while it runs, only an admin key may step out of the split by naming an alias
    MlflowClient().set_registered_model_alias("docs-qa", "pinned", str(v2))
    keyed = routing_gateway(env={"LLMOPS_API_KEYS": "k-app=invoke,feedback;k-adm=admin"})
    with httpx.Client(base_url=keyed.wait_ready().url, timeout=120) as hk:
        ask = {"question": "What is a rollout?", "alias": "pinned"}
        app = hk.post("/v1/chains/docs-qa/invoke", json=ask,
                      headers={"Authorization": "Bearer k-app"})
        assert app.status_code == 403 and "is in a rollout" in app.json()["error"]["message"]
        assert hk.post("/v1/chains/docs-qa/invoke", json=ask,
                       headers={"Authorization": "Bearer k-adm"}).status_code == 200
        # the analysis (versions, split, each arm's evidence) is an operator's, not an app's
        path = "/v1/rollouts/docs-qa/analysis"
        assert hk.get(path, headers={"Authorization": "Bearer k-app"}).status_code == 403
        assert hk.get(path, headers={"Authorization": "Bearer k-adm"}).status_code == 200
    keyed.stop()
    out = run_cli("rollout", "abort", "docs-qa", "--reason", "release freeze", cwd=project)
    assert out.returncode == 0, out.stderr
    assert latest_for_chain(settings.lakehouse, "docs-qa").status == "aborted"
    with pytest.raises(RolloutError, match="no running rollout"):
        abort_rollout("docs-qa", settings)
    out = run_cli("rollout", "status", "docs-qa", cwd=project)
    assert out.returncode == 0, out.stderr
    assert f"rollout {third.rollout_id}" in out.stdout and "release freeze" in out.stdout
