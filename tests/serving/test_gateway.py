"""The gateway in front of a real vLLM engine, driven with the official openai client."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import httpx
import openai
import pytest

from llmops.processes import wait_until
from tests.serving.conftest import read_rows, wait_rows


@pytest.fixture
def gateway(start_gateway):
    return start_gateway()


def client(gw, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=kw.pop("api_key", "none"),
                         max_retries=0, **kw)


def test_openai_client_sync_completions_and_models(gateway, project: Path) -> None:
    c = client(gateway)
    assert "base" in {m.id for m in c.models.list().data}
    raw = c.chat.completions.with_raw_response.create(
        model="base", messages=[{"role": "user", "content": "What is llmops?"}], max_tokens=8,
        extra_headers={"X-Request-Id": "req-sync-1"}, user="end-user-7", logprobs=True,
    )
    rid = raw.headers["x-request-id"]  # the server's id; the client's is kept beside it
    assert rid != "req-sync-1" and len(rid) == 32
    chat = raw.parse()
    answer = chat.choices[0].message.content
    # one log-probability per generated token: the usage counts what was generated
    assert len(chat.choices[0].logprobs.content) == chat.usage.completion_tokens
    assert 1 <= chat.usage.completion_tokens <= 8
    text = c.completions.create(model="base", prompt="llmops is", max_tokens=6, logprobs=1)
    assert len(text.choices[0].logprobs.tokens) == text.usage.completion_tokens <= 6
    rows = wait_rows(project, "inference_log", 2)
    row = rows[rows["request_id"] == rid].iloc[0]
    assert row["response"] == answer  # the row holds what the client got
    assert (row["client_request_id"], row["end_user"], row["client"]) == (
        "req-sync-1", "end-user-7", "127.0.0.1")
    assert row["endpoint"] == "/v1/chat/completions" and row["status"] == 200
    assert row["model"] == "base" and row["env"] == "dev"
    assert row["response"] == chat.choices[0].message.content
    assert row["completion_tokens"] == chat.usage.completion_tokens
    assert json.loads(row["request"])["messages"][0]["content"] == "What is llmops?"
    assert set(rows["endpoint"]) == {"/v1/chat/completions", "/v1/completions"}


def test_streaming_sync_and_async(gateway, project: Path) -> None:
    c = client(gateway)
    stream = c.chat.completions.create(model="base", max_tokens=8, stream=True,
                                       messages=[{"role": "user", "content": "Stream please"}])
    pieces = [ch.choices[0].delta.content or "" for ch in stream if ch.choices]
    streamed = "".join(pieces)

    async def many() -> list[str]:
        ac = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)

        async def one(i: int) -> str:
            out = []
            s = await ac.chat.completions.create(
                model="base", max_tokens=6, stream=True,
                messages=[{"role": "user", "content": f"async question {i}"}])
            async for ch in s:
                if ch.choices:
                    out.append(ch.choices[0].delta.content or "")
            return "".join(out)

        done = await asyncio.gather(*(one(i) for i in range(6)))
        plain = await ac.chat.completions.create(
            model="base", max_tokens=4, messages=[{"role": "user", "content": "not streamed"}])
        await ac.close()
        return [*done, plain.choices[0].message.content]

    results = asyncio.run(many())
    assert len(results) == 7
    rows = wait_rows(project, "inference_log", 8)
    assert len(rows) == 8 and set(rows["status"]) == {200}
    assert streamed in set(rows["response"])
    assert rows["request_id"].is_unique


def test_langchain_chat_openai(gateway) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=gateway.url + "/v1", api_key="none", model="base",
                     max_completion_tokens=6, max_retries=0, temperature=0)
    whole = llm.invoke("Hello again").content
    assert isinstance(whole, str)
    # greedy decoding: the streamed pieces, joined, are the answer given in one piece
    assert "".join(c.content for c in llm.stream("Hello again")) == whole


def test_feedback_round_trip(gateway, project: Path) -> None:
    c = client(gateway)
    raw = c.chat.completions.with_raw_response.create(
        model="base", max_tokens=4, messages=[{"role": "user", "content": "rate me"}])
    rid = raw.headers["x-request-id"]
    h = httpx.Client(base_url=gateway.url)
    ok = h.post("/v1/feedback", json={"request_id": rid, "rating": -1, "correction": "Better.",
                                      "comment": "too short", "user": "ada"})
    assert ok.status_code == 200 and ok.json()["request_id"] == rid
    assert h.post("/v1/feedback", json={"request_id": rid, "score": 4}).status_code == 200
    assert h.post("/v1/feedback", json={"request_id": "nope", "rating": 1}).status_code == 404
    assert h.post("/v1/feedback", json={"request_id": rid, "rating": 7}).status_code == 400
    assert h.post("/v1/feedback", json={"request_id": rid, "rating": "1"}).status_code == 400
    assert h.post("/v1/feedback", json={"request_id": rid, "rating": 4}).status_code == 400
    assert h.post("/v1/feedback", json={"request_id": rid, "score": 6}).status_code == 400
    assert h.post("/v1/feedback", json={"request_id": rid}).status_code == 400  # says nothing
    fb = wait_rows(project, "feedback", 2)
    assert len(fb) == 2 and set(fb["request_id"]) == {rid}
    first = fb[fb["rating"] == -1].iloc[0]
    assert fb[fb["rating"].isna()].iloc[0]["score"] == 4
    assert (first["correction"], first["comment"], first["user"], first["source"]) == (
        "Better.", "too short", "ada", "api")
    logged = read_rows(project, "inference_log")
    assert rid in set(logged["request_id"])
    metrics = h.get("/metrics").text
    assert 'llmops_feedback_total{kind="thumbs_down"} 1.0' in metrics
    assert "llmops_request_latency_seconds_bucket" in metrics


def test_bad_input_never_crashes_or_writes_broken_rows(start_gateway, project: Path) -> None:
    gw = start_gateway()
    h = httpx.Client(base_url=gw.url, timeout=30)
    chat = "/v1/chat/completions"
    msgs = [{"role": "user", "content": "hi"}]
    cases = [
        (h.post(chat, content=b"{not json", headers={"content-type": "application/json"}), 400),
        (h.post(chat, json=[1, 2]), 400),
        (h.post(chat, json={"model": 3, "messages": msgs}), 400),
        (h.post(chat, json={"model": "base", "messages": "hi"}), 400),
        (h.post(chat, json={"model": "base", "messages": msgs, "max_tokens": "8"}), 400),
        (h.post(chat, json={"model": "base", "messages": msgs, "max_tokens": 100000}), 400),
        (h.post(chat, json={"model": "base", "messages": msgs, "stream": "yes"}), 400),
        (h.post(chat, json={"model": "no-such-model", "messages": msgs}), 404),
        (h.post(chat, content=b'{"model": "base", "x": "' + b"a" * 70000 + b'"}'), 413),
        (h.post("/v1/chains/no-such-chain/invoke", json={"question": "hi"}), 404),
        (h.post("/v1/chains/x/invoke", json={"question": 5}), 400),
        # caps: each answered 400 naming the cap, before anything goes upstream
        (h.post(chat, json={"model": "base", "messages": msgs, "n": 9}), 400),
        (h.post(chat, json={"model": "base", "messages": msgs, "logprobs": True,
                            "top_logprobs": 20}), 400),
        (h.post("/v1/completions", json={"model": "base", "prompt": ["a"] * 17}), 400),
        (h.post(chat, json={"model": "base", "messages": [
            {"role": "user", "content": "a" * 33000}]}), 400),
        (h.post("/v1/chains/docs-qa/invoke", json={"question": "q" * 4001}), 400),
    ]
    # What a web page could send from a user's browser to a gateway without keys: a
    # "simple" cross-site POST (text/plain or a form: no preflight) is refused unread, and so
    # is a request reaching it by DNS rebinding (another site's name in Host); neither is logged.
    body = json.dumps({"model": "base", "messages": msgs, "max_tokens": 2}).encode()
    browser = [
        (h.post(chat, content=body, headers={"content-type": "text/plain"}), 415),
        (h.post("/v1/feedback", data={"request_id": "x", "rating": "1"}), 415),
        (h.post(chat, content=body, headers={"content-type": "application/json",
                                             "host": "rebound.example:8000"}), 421),
    ]
    for resp, status in cases + browser:
        assert resp.status_code == status, resp.text
        assert resp.headers["x-request-id"]
        assert resp.json()["error"]["message"]
    assert h.get("/healthz").status_code == 200
    assert h.get("/readyz").status_code == 200
    # the client is the socket's address: X-Forwarded-For is believed only from a proxy
    # the endpoint names (gateway.trust_proxy_headers, off by default)
    last = h.post(chat, json={"model": "base", "messages": msgs, "max_tokens": 2},
                  headers={"x-forwarded-for": "203.0.113.7"})
    assert last.status_code == 200
    caps = {c[0].json()["error"]["message"] for c in cases[-5:]}
    assert caps == {"'n' is over this endpoint's cap of 4",
                    "'top_logprobs' is over this endpoint's cap of 5",
                    "'prompt' holds 17 prompts; this endpoint's cap is 16",
                    "the prompt is 33000 characters; this endpoint's cap is 32000",
                    "the question is 4001 characters; this endpoint's cap is 4000"}
    # the log keeps the order requests ended in: once the last one's row is there, every row
    # the earlier ones would have written is there too
    wait_until(lambda: last.headers["x-request-id"] in set(
        read_rows(project, "inference_log").get("request_id", [])),
        timeout=30, what="the last request's inference_log row")
    rows = read_rows(project, "inference_log")
    # every case but the 413 (whose body was never read) is logged, with its status
    assert sorted(rows["status"].tolist()) == sorted([400] * 13 + [404] * 2 + [200])
    assert rows["request_id"].is_unique and rows["ts"].notna().all()
    assert set(rows["client"]) == {"127.0.0.1"}


def test_engine_down_is_503_and_logged(project: Path) -> None:
    from tests.conftest import free_port
    from tests.serving.conftest import GatewayProcess, write_endpoint

    # a gateway in front of an engine that is not there
    dead = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    write_endpoint(project, dead, port)
    down = GatewayProcess(project, port).wait_ready()
    try:
        h = httpx.Client(base_url=down.url, timeout=30)
        resp = h.post("/v1/chat/completions",
                      json={"model": "base", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 503 and "engine" in resp.json()["error"]["message"]
        assert h.get("/readyz").status_code == 503
        rows = wait_rows(project, "inference_log", 1)
        assert list(rows["status"]) == [503]
    finally:
        down.stop()


def test_metrics_and_health(gateway) -> None:
    c = client(gateway)
    c.chat.completions.create(model="base", max_tokens=3, messages=[{"role": "user", "content": "m"}])
    with urllib.request.urlopen(gateway.url + "/metrics") as resp:
        text = resp.read().decode()
    expected = ('llmops_requests_total{adapter="",chain="",endpoint="/v1/chat/completions",'
                'model="base",status="200"} 1.0')
    assert expected in text
    assert "llmops_completion_tokens_bucket" in text
