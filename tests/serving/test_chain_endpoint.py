"""POST /v1/chains/{name}/invoke: a registered RAG chain, its chat model pointed at vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from llmops.chains import log_chain, promote
from llmops.indexing import update_index
from llmops.prompts import set_alias, sync_prompts
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.serving.conftest import wait_rows


def _chain_trace(receiver: OtlpReceiver, rid: str) -> dict[str, ReceivedSpan]:
    """The chain request's spans, by role, once all four have arrived."""
    def spans() -> dict[str, ReceivedSpan]:
        got = receiver.spans()
        server = [s for s in got if s.attributes.get("llmops.request_id") == rid]
        if not server:
            return {}
        same = [s for s in got if s.trace_id == server[0].trace_id]
        found = {"server": server[0]}
        for s in same:
            if s.name == "retrieval":
                found["retrieval"] = s
            elif s.name.startswith("chat "):
                found["chat"] = s
            elif s.name == "llm_request":
                found["engine"] = s
        return found

    receiver.wait_for(lambda _: len(spans()) == 4, timeout=60)
    return spans()


def test_chain_invoke_through_the_gateway(project: Path, settings, start_gateway,
                                          docs_indexed, otlp_receiver: OtlpReceiver) -> None:
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    index = update_index(settings, progress=False, record=False)
    logged = log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=settings)
    promote("docs-qa", "production", logged.version, settings=settings)
    gw = start_gateway(env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_receiver.url})
    h = httpx.Client(base_url=gw.url, timeout=120)
    resp = h.post("/v1/chains/docs-qa/invoke",
                  json={"question": "How do I promote a chain to production?"},
                  headers={"X-Request-Id": "chain-1"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    rid = body["request_id"]
    assert rid == resp.headers["x-request-id"] != "chain-1"  # the server's id, never the client's
    assert body["answer"].strip()  # and it is what the log stored (below)
    docs = {p.name for p in (project / "docs").glob("*.md")}
    assert body["sources"] and set(body["sources"]) <= docs
    assert body["versions"] == {"chain": f"docs-qa/{logged.version}", "prompt": "qa/1",
                                "index": index.index_version, "model": "base", "adapter": None}
    # one trace: the request, its retrieval and model call (children), vLLM's span under the call
    trace = _chain_trace(otlp_receiver, rid)
    server, retrieval, chat, engine = (trace[k] for k in ("server", "retrieval", "chat", "engine"))
    assert server.name == "invoke_agent" and server.attributes["gen_ai.operation.name"] == (
        "invoke_agent")
    assert (server.attributes["llmops.chain.name"], server.attributes["llmops.chain.version"],
            server.attributes["llmops.prompt.name"], server.attributes["llmops.prompt.version"],
            server.attributes["llmops.index.version"]) == (
        "docs-qa", str(logged.version), "qa", "1", index.index_version)
    assert retrieval.parent_id == server.span_id == chat.parent_id
    assert retrieval.attributes["gen_ai.operation.name"] == "retrieval"
    assert retrieval.attributes["llmops.index.version"] == index.index_version
    assert chat.name == "chat base" and chat.kind == 3  # CLIENT
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert engine.parent_id == chat.span_id
    staging = h.post("/v1/chains/docs-qa/invoke", json={"question": "Hi", "alias": "staging"})
    assert staging.status_code == 200
    assert h.post("/v1/chains/docs-qa/invoke",
                  json={"question": "Hi", "alias": "nowhere"}).status_code == 404
    # a client reusing its X-Request-Id never makes two rows share an id
    again = h.post("/v1/chains/docs-qa/invoke", json={"question": "Hi", "user": "ana"},
                   headers={"X-Request-Id": "chain-1"})
    assert again.status_code == 200 and again.json()["request_id"] not in (rid, "chain-1")
    assert h.post("/v1/feedback", json={"request_id": "chain-1", "score": 5}).status_code == 404
    fb = h.post("/v1/feedback", json={"request_id": rid, "score": 5})
    assert fb.status_code == 200
    rows = wait_rows(project, "inference_log", 4)
    assert rows["request_id"].is_unique
    assert sorted(rows["client_request_id"].dropna()) == ["chain-1", "chain-1"]
    assert rows[rows["request_id"] == again.json()["request_id"]].iloc[0]["end_user"] == "ana"
    row = rows[rows["request_id"] == rid].iloc[0]
    assert row["index_version"] == index.index_version
    # what the model was asked is logged: the prompt's messages with the retrieved context
    logged_request = json.loads(row["request"])
    assert logged_request["question"] == "How do I promote a chain to production?"
    roles = [m["role"] for m in logged_request["messages"]]
    assert roles[0] == "system" and roles[-1] == "user"
    assert "How do I promote a chain to production?" in logged_request["messages"][-1]["content"]
    assert (row["chain"], row["chain_version"], row["prompt"], row["prompt_version"]) == (
        "docs-qa", str(logged.version), "qa", "1")
    assert row["model"] == "base" and row["status"] == 200
    assert row["response"] == body["answer"]
    assert len(wait_rows(project, "feedback", 1)) == 1

    # the index changes under the served chain: answers report the version they read
    (project / "docs" / "rollouts.md").write_text(
        "# Rollouts\n\nA rollout sends a share of live traffic to a candidate chain version.\n")
    updated = update_index(settings, progress=False, record=False)
    assert updated.index_version != index.index_version
    fresh = h.post("/v1/chains/docs-qa/invoke", json={"question": "What is a rollout?"})
    assert fresh.status_code == 200
    assert fresh.json()["versions"]["index"] == updated.index_version
    rows = wait_rows(project, "inference_log", 5)
    assert rows[rows["request_id"] == fresh.json()["request_id"]].iloc[0]["index_version"] == (
        updated.index_version)

    # a question the model cannot take (over its 2,048-token context: one token a digit) is
    # the client's error, logged as a 400: never a 503 that a rollout would count against
    # the arm that served it
    long = h.post("/v1/chains/docs-qa/invoke", json={"question": "7 " * 1990})
    assert long.status_code == 400, long.text
    assert long.json()["error"]["message"].startswith("the model refused the request (400)")
    rows = wait_rows(project, "inference_log", 6)
    assert rows[rows["request_id"] == long.headers["x-request-id"]].iloc[0]["status"] == 400

    # An evaluation through the gateway salts the engine's prefix cache with a salt of its
    # own run (the chain's chat requests carry it; the gateway forwards it to vLLM), so its
    # answers never come from prompts other traffic left cached; two runs, two salts. The log
    # keeps each salt as a fingerprint only (a salt is its caller's secret).
    from llmops.evals import evaluate_chain

    questions = project / "two.jsonl"
    questions.write_text("".join(json.dumps({"id": f"e{i}", "question": q, "expected": "x"}) + "\n"
                                 for i, q in enumerate(("What is a rollout?", "What is MLflow?"))))
    for _ in range(2):
        report = evaluate_chain("docs-qa@production", [questions], settings, endpoint=gw.url,
                                concurrency=2, record=False, traces=0)
        assert report.rows == {"two": 2}
    rows = wait_rows(project, "inference_log", 10)
    evals = rows[rows["endpoint"] == "/v1/chat/completions"].sort_values("ts", kind="stable")
    salts = [json.loads(r).get("cache_salt") for r in evals["request"]]
    assert len(salts) == 4 and all(s and s.startswith("sha256:") for s in salts), salts
    assert salts[0] == salts[1] != salts[2] == salts[3]
    assert not any("llmops-eval-" in r for r in rows["request"])
    answers = list(evals["response"])
    assert sorted(answers[:2]) == sorted(answers[2:])  # each run's two, in either order
    # the chain route's own calls to the engine carry none (they are not logged as chats)
    assert all("cache_salt" not in r for r in rows[rows["endpoint"] != "/v1/chat/completions"]
               ["request"])
