"""No client can exhaust the endpoint: default output cap, per-key limits, bounded metrics,
and a log that cannot keep up makes the gateway not ready (against the real engine)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import free_port
from tests.serving.conftest import GatewayProcess, read_rows, wait_rows, write_endpoint

MSGS = [{"role": "user", "content": "Tell me a long story about gateways."}]
OPS = {"Authorization": "Bearer k-ops"}  # the keys file's key with the metrics scope


def _metric(text: str, prefix: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def test_a_request_without_max_tokens_gets_the_default_cap(start_gateway, project: Path) -> None:
    gw = start_gateway(default_max_tokens=5)
    with httpx.Client(base_url=gw.url, timeout=60) as h:
        body = {"model": "base", "messages": MSGS, "temperature": 0, "ignore_eos": True}
        resp = h.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["usage"]["completion_tokens"] == 5
        capped = h.post("/v1/chat/completions", json={**body, "max_tokens": 7})
        assert capped.json()["usage"]["completion_tokens"] == 7
    rows = wait_rows(project, "inference_log", 2)
    sent = [json.loads(r) for r in rows.sort_values("ts")["request"]]
    # the gateway added the field and passed everything else unchanged
    assert sent[0] == {"max_tokens": 5, **body}
    assert sent[1] == {**body, "max_tokens": 7}


def _gateway_with_keys(project: Path, engine_url: str, keys: str) -> GatewayProcess:
    """A ready gateway whose keys (YAML list items) come from a keys file."""
    (project / "keys.yaml").write_text("keys:\n" + keys)
    port = free_port()
    write_endpoint(project, engine_url, port, max_tokens_cap=1500)
    with open(project / "serving" / "endpoint.yaml", "a") as f:
        f.write("auth:\n  keys_file: keys.yaml\n")
    return GatewayProcess(project, port, env={"LLMOPS_API_KEYS": ""}).wait_ready()


def test_per_key_limits_answer_429_with_retry_after(engine_url: str, project: Path) -> None:
    gw = _gateway_with_keys(
        project, engine_url,
        "  - {name: metered, key: k-metered, scopes: [invoke], requests_per_minute: 2}\n"
        "  - {name: single, key: k-single, scopes: [invoke], max_concurrent: 1}\n"
        "  - {name: free, key: k-free, scopes: [invoke]}\n"
        "  - {name: careless, key: k-careless, scopes: [invoke], requests_per_minute: 3}\n"
        "  - {name: prober, key: k-prober, scopes: [feedback], requests_per_minute: 2}\n"
        "  - {name: ops, key: k-ops, scopes: [metrics]}\n")
    try:
        _check_limits(gw)
        _check_rejected_requests_count(gw)
    finally:
        gw.stop()


def _check_rejected_requests_count(gw: GatewayProcess) -> None:
    """The key's limits come first: refused requests count, and over the limit write no rows."""
    with httpx.Client(base_url=gw.url, timeout=120) as h:
        careless = {"Authorization": "Bearer k-careless"}
        steer = {"model": "base", "messages": MSGS, "max_tokens": 2, "logit_bias": {"42": 100}}
        bad = [h.post("/v1/chat/completions", json=steer, headers=careless) for _ in range(3)]
        assert [r.status_code for r in bad] == [400] * 3
        assert "'logit_bias' is not a field this gateway forwards" in bad[0].json()["error"][
            "message"]
        # a good request from the same key is now over its 3 a minute: the 400s counted
        good = {"model": "base", "messages": MSGS, "max_tokens": 2}
        over = h.post("/v1/chat/completions", json=good, headers=careless)
        assert over.status_code == 429, over.text
        # feedback too: unknown ids are refused (404) and counted; the third is 429
        prober = {"Authorization": "Bearer k-prober"}
        probes = [h.post("/v1/feedback", json={"request_id": f"guess-{i}", "rating": 1},
                         headers=prober).status_code for i in range(3)]
        assert probes == [404, 404, 429]
        # /metrics names keys: it needs a key with the metrics scope
        assert h.get("/metrics").status_code == 401
        metrics = h.get("/metrics", headers=OPS).text
        # a last request, logged after all of the above (the log keeps its order)
        last = h.post("/v1/chat/completions", json=good, headers={"Authorization": "Bearer k-free"})
        assert last.status_code == 200
    assert _metric(metrics, 'llmops_rate_limited_total{key="careless"}') == 1
    assert _metric(metrics, 'llmops_rate_limited_total{key="prober"}') == 1
    # the three 400s are logged (nothing went upstream); the 429 is not
    deadline = time.monotonic() + 30
    while last.headers["x-request-id"] not in set(read_rows(gw.project, "inference_log")[
            "request_id"]):
        assert time.monotonic() < deadline, "the last request was never logged"
        time.sleep(0.2)
    rows = read_rows(gw.project, "inference_log")
    refused = rows[rows["client"] == "careless"]
    assert sorted(refused["status"]) == [400, 400, 400]


def _check_limits(gw: GatewayProcess) -> None:
    body = {"model": "base", "messages": MSGS, "max_tokens": 2}
    with httpx.Client(base_url=gw.url, timeout=120) as h:
        metered = [h.post("/v1/chat/completions", json=body,
                          headers={"Authorization": "Bearer k-metered"}) for _ in range(3)]
        assert [r.status_code for r in metered] == [200, 200, 429]
        assert int(metered[2].headers["retry-after"]) >= 1
        assert "2 requests per minute" in metered[2].json()["error"]["message"]
        # another key is not affected
        assert h.post("/v1/chat/completions", json=body,
                      headers={"Authorization": "Bearer k-free"}).status_code == 200

        # one stream in flight holds the single key's only slot
        single = {"Authorization": "Bearer k-single"}
        for attempt in range(3):
            with httpx.Client(base_url=gw.url, timeout=120) as s, s.stream(
                    "POST", "/v1/chat/completions", headers=single,
                    json={**body, "max_tokens": 1500, "ignore_eos": True, "stream": True}) as r:
                stream_id = r.headers["x-request-id"]
                lines = r.iter_lines()
                assert next(lines).startswith("data: ")
                busy = h.post("/v1/chat/completions", json=body, headers=single)
                rest = list(lines)
            assert rest[-1] == "data: [DONE]" or rest[-2] == "data: [DONE]"
            if busy.status_code == 429:
                break
            # A 200 is right only if the stream had ended (its slot freed) before the second
            # request arrived: this test process can be held up for seconds on a busy machine
            # while the gateway relays all 1,500 tokens into the socket's buffers.
            assert busy.status_code == 200, busy.text
            rows = wait_rows(gw.project, "inference_log", 5 + 2 * attempt)
            ended = rows[rows["request_id"] == stream_id]["ts"].iloc[0]
            second = rows[rows["request_id"] == busy.headers["x-request-id"]].iloc[0]
            arrived = second["ts"] - pd.Timedelta(milliseconds=float(second["latency_ms"]))
            assert arrived >= ended, f"a second request ran beside the stream: {second.to_dict()}"
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        # the slot is free again once the stream ended
        assert h.post("/v1/chat/completions", json=body,
                      headers={"Authorization": "Bearer k-single"}).status_code == 200
        metrics = h.get("/metrics", headers=OPS).text
    assert _metric(metrics, 'llmops_rate_limited_total{key="metered"}') == 1
    assert _metric(metrics, 'llmops_rate_limited_total{key="single"}') == 1
    assert "rate limit: key metered refused" in gw.output()


def test_a_client_gone_mid_stream_stops_the_relay_frees_its_slot_and_is_logged(
        engine_url: str, project: Path) -> None:
    """A client that closes its connection in the middle of a long stream: the gateway stops
    relaying (and so stops the engine's generation), logs the request as 499 with what was
    streamed so far, and the key's only slot is free again at once."""
    gw = _gateway_with_keys(
        project, engine_url,
        "  - {name: single, key: k-single, scopes: [invoke], max_concurrent: 1}\n")
    single = {"Authorization": "Bearer k-single"}
    long = {"model": "base", "messages": MSGS, "max_tokens": 1500, "ignore_eos": True,
            "stream": True}
    try:
        with httpx.Client(base_url=gw.url, timeout=120) as s, s.stream(
                "POST", "/v1/chat/completions", headers=single, json=long) as r:
            rid = r.headers["x-request-id"]
            # read up to the first event with text (the first is the role's alone, and a
            # token that ends inside a UTF-8 character comes with the next one)
            for line in r.iter_lines():
                if line.startswith("data: {") and any(
                        (c.get("delta") or {}).get("content")
                        for c in json.loads(line[6:]).get("choices") or ()):
                    break
        # leaving both blocks closed the connection with most of the stream unread
        gone_at = time.time()
        with httpx.Client(base_url=gw.url, timeout=120) as h:
            short = {"model": "base", "messages": MSGS, "max_tokens": 2}
            status = h.post("/v1/chat/completions", json=short, headers=single).status_code
            while status == 429 and time.time() - gone_at < 10:
                time.sleep(0.1)
                status = h.post("/v1/chat/completions", json=short, headers=single).status_code
        assert status == 200  # the slot came back without waiting for 1,500 tokens
        rows = wait_rows(project, "inference_log", 2)
        row = rows[rows["request_id"] == rid].iloc[0]
        assert row["status"] == 499 and row["client"] == "single"
        assert 1 <= row["completion_tokens"] < 1500
        assert row["response"]  # what was streamed before the client left
    finally:
        gw.stop()


def test_metric_labels_hold_only_known_names(start_gateway) -> None:
    gw = start_gateway()
    with httpx.Client(base_url=gw.url, timeout=60) as h:
        for i in range(40):
            assert h.post("/v1/chat/completions", json={
                "model": f"made-up-{i}", "messages": MSGS}).status_code == 404
            assert h.post(f"/v1/chains/made-up-{i}/invoke",
                          json={"question": "hi"}).status_code == 404
        metrics = h.get("/metrics").text
    assert "made-up" not in metrics
    assert _metric(metrics, 'llmops_requests_total{adapter="",chain="",endpoint='
                            '"/v1/chat/completions",model="unknown",status="404"}') == 40
    assert _metric(metrics, 'llmops_requests_total{adapter="",chain="unknown",endpoint='
                            '"/v1/chains/{name}/invoke",model="",status="404"}') == 40


def test_readyz_turns_503_while_the_log_cannot_flush(start_gateway, project: Path) -> None:
    table = project / ".llmops" / "dev" / "lakehouse" / "inference_log"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text("not a table")  # every commit to inference_log now fails
    gw = start_gateway(log_unready_after_s=0.5)
    with httpx.Client(base_url=gw.url, timeout=60) as h:
        body = {"model": "base", "messages": MSGS, "max_tokens": 2}
        acked = [h.post("/v1/chat/completions", json=body).headers["x-request-id"]
                 for _ in range(3)]
        deadline = time.time() + 30
        ready = h.get("/readyz")
        while ready.status_code == 200 and time.time() < deadline:
            time.sleep(0.3)
            ready = h.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["log"].startswith("the log has failed to flush for")
        assert ready.json()["engine"] == "ok"
        assert "Error" not in ready.text and "not a table" not in ready.text
        assert _metric(h.get("/metrics").text, "llmops_log_flush_failures ") >= 1
        table.unlink()  # the table can be written again
        deadline = time.time() + 30
        while h.get("/readyz").status_code != 200:
            if time.time() > deadline:
                pytest.fail("the gateway did not become ready after the log recovered")
            time.sleep(0.3)
    rows = wait_rows(project, "inference_log", 3)
    assert sorted(rows["request_id"]) == sorted(acked)  # nothing acknowledged was lost
    assert "flush" in gw.output()
    assert len(read_rows(project, "inference_log")) == 3


def test_a_burst_of_feedback_for_unknown_ids_while_streams_run(start_gateway,
                                                               project: Path) -> None:
    """Unknown ids are looked up off the event loop: every stream completes, every made-up id
    gets 404, and feedback on a real answer still lands."""
    import asyncio
    import uuid

    gw = start_gateway()

    async def run() -> tuple[list[list[str]], list[int], list[str]]:
        async with httpx.AsyncClient(base_url=gw.url, timeout=120) as h:
            async def stream(i: int) -> tuple[list[str], str]:
                async with h.stream("POST", "/v1/chat/completions", json={
                        "model": "base", "messages": MSGS, "max_tokens": 48, "ignore_eos": True,
                        "stream": True, "stream_options": {"include_usage": True}}) as r:
                    return [x async for x in r.aiter_lines() if x], r.headers["x-request-id"]

            async def feedback() -> int:
                resp = await h.post("/v1/feedback", json={"request_id": uuid.uuid4().hex,
                                                          "rating": 1})
                return resp.status_code

            results = await asyncio.gather(*[stream(i) for i in range(3)],
                                           *[feedback() for _ in range(150)])
        streams = [r for r in results[:3]]
        return [s[0] for s in streams], list(results[3:]), [s[1] for s in streams]

    # a table to look the made-up ids up in
    with httpx.Client(base_url=gw.url, timeout=60) as h:
        h.post("/v1/chat/completions", json={"model": "base", "messages": MSGS, "max_tokens": 2})
    wait_rows(project, "inference_log", 1)
    lines, statuses, ids = asyncio.run(run())
    assert statuses == [404] * 150
    for stream_lines in lines:
        assert stream_lines[-1] == "data: [DONE]"
        # every stream ran to its 48 tokens (its events can be fewer: vLLM holds back a token
        # that ends inside a UTF-8 character and sends it with the next)
        assert json.loads(stream_lines[-2][6:])["usage"]["completion_tokens"] == 48
    with httpx.Client(base_url=gw.url, timeout=60) as h:
        assert h.post("/v1/feedback", json={"request_id": ids[0], "rating": 1}).status_code == 200
    assert len(wait_rows(project, "feedback", 1)) == 1


def test_prompt_caps_count_prompts_not_token_ids() -> None:
    from llmops.serving.config import GatewayConfig
    from llmops.serving.errors import HTTPError
    from llmops.serving.limits import check_generation

    cfg = GatewayConfig(max_prompts=2, max_prompt_chars=50)
    check_generation({"model": "m", "prompt": list(range(40))}, "text", cfg)  # one prompt
    check_generation({"model": "m", "prompt": ["a", "b"]}, "text", cfg)
    for prompt, message in (
        (["a", "b", "c"], "'prompt' holds 3 prompts; this endpoint's cap is 2"),
        (list(range(51)), "the prompt is 51 tokens; this endpoint's cap is 50"),
        (["x" * 51], "the prompt is 51 characters; this endpoint's cap is 50"),
        (["a", 1], "'prompt' must be a string, a list of strings or a list of token ids"),
        ([True], "'prompt' must be a string, a list of strings or a list of token ids"),
    ):
        with pytest.raises(HTTPError) as err:
            check_generation({"model": "m", "prompt": prompt}, "text", cfg)
        assert (err.value.status, err.value.message) == (400, message)


def test_the_openai_routes_forward_only_allowed_fields() -> None:
    """Fields that make the engine do unplanned work are refused, each with a 400 naming it;
    message count and roles are capped (30,000 empty messages would count as 0 characters)."""
    from llmops.serving.config import GatewayConfig
    from llmops.serving.errors import HTTPError
    from llmops.serving.limits import check_generation

    cfg = GatewayConfig(max_messages=8)
    msgs = [{"role": "user", "content": "hi"}]
    fine = {"model": "m", "messages": msgs, "stop": ["\n"], "seed": 1, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True,
            "min_tokens": 2, "top_k": 5, "presence_penalty": 0.5, "user": "u",
            "cache_salt": "llmops-eval-0f3a"}
    check_generation(fine, "chat", cfg)
    # a prefix-cache salt within vLLM's own bounds (it would refuse the others with a 400)
    for salt in ("", "a/b", "a@b", "x" * 129, 7):
        with pytest.raises(HTTPError) as err:
            check_generation({**fine, "cache_salt": salt}, "chat", cfg)
        assert err.value.status == 400 and "cache_salt" in err.value.message
    attacks = {
        "logit_bias": {"1": 100}, "prompt_logprobs": 20, "guided_json": {"type": "object"},
        "guided_regex": "a+", "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "auto",
        "priority": -100, "vllm_xargs": {"x": 1}, "echo": True,
    }
    for field, value in attacks.items():
        with pytest.raises(HTTPError) as err:
            check_generation({"model": "m", "messages": msgs, field: value}, "chat", cfg)
        assert (err.value.status, err.value.message) == (
            400, f"'{field}' is not a field this gateway forwards to the engine (an endpoint's "
                 "gateway.extra_fields can allow it)")
        with pytest.raises(HTTPError):
            check_generation({"model": "m", "prompt": "x", field: value}, "text", cfg)
    for messages, message in (
        ([{"role": "user", "content": ""}] * 9, "'messages' holds 9 messages; this endpoint's cap is 8"),
        ([{"role": "tool", "content": "x", "tool_call_id": "1"}],
         "messages[0].role must be one of system, developer, user, assistant"),
        ([{"role": "user", "content": "x", "tool_calls": []}],
         "messages[0]: 'tool_calls' is not a field this gateway forwards to the engine"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
         "messages[0].content must be a string or a list of text parts ({type: text, text})"),
        # empty text parts: 0 characters each, but each is work; they count as messages do
        ([{"role": "user", "content": [{"type": "text", "text": ""}] * 9}],
         "the messages hold more than 8 content parts in all; this endpoint's cap is 8"),
        ([{"role": "user", "content": [{"type": "text", "text": ""}] * 5}] * 2,
         "the messages hold more than 8 content parts in all; this endpoint's cap is 8"),
    ):
        with pytest.raises(HTTPError) as err:
            check_generation({"model": "m", "messages": messages}, "chat", cfg)
        assert (err.value.status, err.value.message) == (400, message)
    with pytest.raises(HTTPError) as err:
        check_generation({"model": "m", "messages": msgs, "stop": ["a"] * 9}, "chat", cfg)
    assert err.value.status == 400 and err.value.message.startswith("'stop': ")
    check_generation({"model": "m", "messages": [  # 8 parts in all: at the cap, accepted
        {"role": "user", "content": [{"type": "text", "text": "a"}] * 4}] * 2}, "chat", cfg)
    # an operator may allow a field for callers who need it: then it is forwarded as sent
    check_generation({"model": "m", "messages": msgs, "response_format": {"type": "json_object"}},
                     "chat", GatewayConfig(extra_fields=["response_format"]))


def test_the_log_keeps_a_cache_salt_as_its_fingerprint_only() -> None:
    import hashlib
    import json

    from llmops.serving.state import logged_request

    raw = b'{"model": "m", "cache_salt": "tenant-7-secret", "messages": []}'
    for logged in (logged_request(json.loads(raw), raw), logged_request(json.loads(raw))):
        body = json.loads(logged)
        assert "tenant-7-secret" not in logged and body["model"] == "m"
        assert body["cache_salt"] == (
            "sha256:" + hashlib.sha256(b"tenant-7-secret").hexdigest()[:16])
    plain = b'{"model":  "m"}'  # without a salt: the client's bytes, as sent
    assert logged_request(json.loads(plain), plain) == plain.decode()


def test_feedback_text_is_capped() -> None:
    from llmops.feedback.records import CAPS, feedback_problem

    assert feedback_problem(1, None, correction="x" * CAPS["correction"]) is None
    assert feedback_problem(1, None, correction="x" * (CAPS["correction"] + 1)) == (
        f"the correction is over its cap of {CAPS['correction']} characters")
    assert feedback_problem(None, None, comment="y" * (CAPS["comment"] + 1)) == (
        f"the comment is over its cap of {CAPS['comment']} characters")


def test_a_body_that_never_arrives_is_answered_408(start_gateway) -> None:
    """A client that sends its headers and then its body byte by byte (or never) holds a
    connection only until gateway.body_timeout_s (slowloris)."""
    import socket

    gw = start_gateway(body_timeout_s=1)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"")
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 1 s" in answer or b"408" in answer
    assert waited < 20  # the deadline, not the test's socket timeout, ended it


def _allowed_fields() -> set[str]:
    from llmops.serving.config import GatewayConfig
    from llmops.serving.schema import generation_models

    models = generation_models(GatewayConfig())
    return set(models.chat.model_fields) | set(models.completion.model_fields)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.text(st.characters(codec="utf-8"), min_size=1, max_size=24),
       value=st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                       st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)))
def test_any_field_off_the_allow_list_is_refused_naming_it(name: str, value: object) -> None:
    """Whatever a client adds beside a valid request, if the gateway does not name the field
    it is refused (400 naming it), never forwarded; the request alone passes."""
    from llmops.serving.config import GatewayConfig
    from llmops.serving.errors import HTTPError
    from llmops.serving.limits import check_generation

    assume(name not in _allowed_fields())
    cfg = GatewayConfig()
    for kind, body in (("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
                       ("text", {"model": "m", "prompt": "hi"})):
        check_generation(body, kind, cfg)
        with pytest.raises(HTTPError) as err:
            check_generation({**body, name: value}, kind, cfg)
        assert err.value.status == 400
        assert err.value.message.startswith(f"'{name}' is not a field this gateway forwards")
