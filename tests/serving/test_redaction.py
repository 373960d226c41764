"""Redaction before storage through a real gateway (``llmops serve``, its real write-ahead log
and Delta tables) in front of the stub engine, which echoes the prompt so that the answer
carries the same personal data (vLLM is not what is under test here)."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import httpx
import pytest

from llmops.processes import start_process, stop_process_tree, wait_for_http
from tests.conftest import free_port
from tests.serving.conftest import GatewayProcess, read_rows, wait_rows

STUB = Path(__file__).with_name("stub_engine.py")
CANARIES = {
    "EMAIL_ADDRESS": "canary.ada@example.org",
    "PHONE_NUMBER": "+1-415-555-2671",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN_CODE": "GB82WEST12345698765432",
    "API_KEY": "sk-proj-Canary1234567890abcdefXYZ",
}
KEY, ADMIN = "canary-test-user-key", "canary-test-admin-key"
PROMPT = ("Hello, I am {EMAIL_ADDRESS}, call me on {PHONE_NUMBER}; my card is {CREDIT_CARD}, "
          "my IBAN {IBAN_CODE} and my key {API_KEY}.").format(**CANARIES)


@pytest.fixture
def echo_engine(tmp_path: Path):
    key = secrets.token_hex(16)
    port = free_port()
    proc = start_process([sys.executable, str(STUB), "--port", str(port), "--echo"],
                         tmp_path / "stub.log", env={**os.environ, "VLLM_API_KEY": key},
                         new_session=True)
    wait_for_http(f"http://127.0.0.1:{port}/health", timeout=30, proc=proc,
                  log_path=tmp_path / "stub.log", what="the stub engine", error=AssertionError)
    yield f"http://127.0.0.1:{port}/v1", key
    os.killpg(proc.pid, 15)
    stop_process_tree(proc, grace_s=5)


def start(project: Path, engine: tuple[str, str], env: str,
          more: dict[str, str] | None = None) -> GatewayProcess:
    port = free_port()
    (project / "serving").mkdir(exist_ok=True)
    # a long flush interval: the rows stay in the write-ahead log until the gateway stops
    (project / "serving" / "endpoint.yaml").write_text(
        "engine:\n  served_model_name: base\n  enable_lora: false\n"
        f"gateway:\n  host: 127.0.0.1\n  port: {port}\n  max_tokens_cap: 64\n"
        "  log_flush_interval_s: 3600\n")
    return GatewayProcess(project, port, env={"LLMOPS_ENGINE_API_KEY": engine[1],
                                              "LLMOPS_ENV": env,
                                              "LLMOPS_API_KEYS": f"{KEY}=invoke,feedback;"
                                                                 f"{ADMIN}=admin,metrics",
                                              **(more or {})},
                          args=("--engine-url", engine[0])).wait_ready(timeout=240)


def exchange(url: str) -> tuple[str, str]:
    """A chat request, a streamed one and feedback carrying the canaries; what the client got
    back (the answer and the streamed answer)."""
    body = {"model": "base", "max_tokens": 60, "messages": [{"role": "user", "content": PROMPT}]}
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, timeout=60, headers=auth) as client:
        resp = client.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        answer = resp.json()["choices"][0]["message"]["content"]
        words = len(PROMPT.split())
        streamed = []
        with client.stream("POST", "/v1/chat/completions",
                           json={**body, "stream": True, "max_tokens": words}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    streamed.append(delta.get("content") or "")
        fb = client.post("/v1/feedback", json={
            "request_id": resp.headers["x-request-id"], "rating": -1,
            "correction": f"Write to {CANARIES['EMAIL_ADDRESS']} instead.",
            "comment": f"It leaked {CANARIES['CREDIT_CARD']} and {CANARIES['API_KEY']}"})
        assert fb.status_code == 200, fb.text
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    return answer, "".join(streamed), metrics


def wal_text(project: Path, env: str) -> str:
    return "".join(p.read_text() for p in (project / ".llmops" / env / "wal").rglob("*.jsonl"))


def table_text(project: Path, env: str) -> str:
    return "".join(read_rows(project, table, env).to_json(orient="records")
                   for table in ("inference_log", "feedback"))


def test_with_redaction_on_no_canary_is_stored_and_the_client_gets_the_answer_unchanged(
        project: Path, echo_engine, otlp_receiver) -> None:
    # prod redacts by default; its spans carry message content (capture on), redacted too
    gw = start(project, echo_engine, "prod", {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_receiver.url,
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})
    try:
        answer, streamed, metrics = exchange(gw.url)
        # logging_only: the engine got the prompt as sent (it echoes it), so did the client
        assert answer == PROMPT and streamed == PROMPT
        wal = wal_text(project, "prod")
        assert wal.count('"request_id"') >= 3  # two requests and a piece of feedback
    finally:
        gw.stop()  # its write-ahead log commits to Delta as it stops (and its spans go out)
    rows = wait_rows(project, "inference_log", 2, env="prod")
    ids = set(read_rows(project, "inference_log", "prod")["request_id"])
    spans = [s for s in otlp_receiver.wait_for(lambda got: ids <= {
        s.attributes.get("llmops.request_id") for s in got}) if s.attributes.get(
        "llmops.request_id") in ids]
    content = json.dumps([s.attributes for s in spans])
    assert "gen_ai.input.messages" in content and "<CREDIT_CARD>" in content
    assert not any(canary in content or json.dumps(canary)[1:-1] in content
                   for canary in CANARIES.values())
    feedback = wait_rows(project, "feedback", 1, env="prod")
    tables = table_text(project, "prod")
    for entity, canary in CANARIES.items():
        assert canary not in wal, entity
        assert canary not in tables, entity
        assert json.dumps(canary)[1:-1] not in wal + tables, entity  # nor JSON-escaped
    for row in rows.to_dict("records"):
        sent = json.loads(row["request"])  # still JSON
        content = sent["messages"][0]["content"]
        assert all(f"<{entity}>" in content for entity in CANARIES), content
        assert all(f"<{entity}>" in row["response"] for entity in CANARIES), row["response"]
    assert feedback["correction"][0] == "Write to <EMAIL_ADDRESS> instead."
    assert feedback["comment"][0] == "It leaked <CREDIT_CARD> and <API_KEY>"
    # per entity: the two requests and two answers hold one of each; the feedback adds
    # an e-mail address, a card and a key
    counted = {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
               for line in metrics.splitlines() if line.startswith("llmops_redactions_total{")}
    assert counted == {"EMAIL_ADDRESS": 5, "PHONE_NUMBER": 4, "CREDIT_CARD": 5, "IBAN_CODE": 4,
                       "API_KEY": 5}


def test_with_redaction_off_in_dev_the_text_is_stored_as_sent(project: Path, echo_engine) -> None:
    gw = start(project, echo_engine, "dev")
    try:
        answer, _, metrics = exchange(gw.url)
        assert answer == PROMPT
        assert all(canary in wal_text(project, "dev") for canary in CANARIES.values())
    finally:
        gw.stop()
    rows = wait_rows(project, "inference_log", 2)
    assert json.loads(rows["request"][0])["messages"][0]["content"] == PROMPT
    assert set(rows["response"]) == {PROMPT}
    assert wait_rows(project, "feedback", 1)["comment"][0].startswith(
        f"It leaked {CANARIES['CREDIT_CARD']}")
    assert "llmops_redactions_total" not in metrics
