"""OpenTelemetry traces: the gateway's spans on the GenAI conventions, read back from a real
OTLP receiver (``tests/otlp_receiver.py``), with vLLM's own span joined under them.

The session engine is real vLLM (CPU build) exporting its spans to the same receiver
(``--otlp-traces-endpoint``); the gateway is a real ``llmops serve`` process configured by
the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` variable. The chain's trace (request,
retrieval, model call, engine) is checked in ``test_chain_endpoint.py``, where a chain is
registered anyway.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

SERVER, CLIENT = 2, 3  # OTLP span kinds


def _one(spans: list[ReceivedSpan], **attributes: object) -> ReceivedSpan:
    found = [s for s in spans if all(s.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, f"{len(found)} spans with {attributes}"
    return found[0]


def _engine_child(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == "llm_request" and s.trace_id == parent.trace_id
            and s.parent_id == parent.span_id]


def test_each_request_is_one_trace_from_the_gateway_into_vllm(
        start_gateway, otlp_receiver: OtlpReceiver) -> None:
    gw = start_gateway(env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_receiver.url,
                            "LLMOPS_API_KEYS": "sk-trace-canary-1234=invoke,feedback;"
                                               "sk-trace-metrics-5678=metrics"})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-trace-canary-1234")
    raw = client.chat.completions.with_raw_response.create(
        model="base", messages=[{"role": "user", "content": "Say hello to the tracer"}],
        max_tokens=6)
    answer, rid = raw.parse(), raw.headers["x-request-id"]
    with httpx.Client(base_url=gw.url, timeout=60,
                      headers={"authorization": "Bearer sk-trace-canary-1234"}) as h:
        with h.stream("POST", "/v1/completions", json={
                "model": "base", "prompt": "Once upon a time", "max_tokens": 5, "stream": True,
                "stream_options": {"include_usage": True}}) as stream:
            events = [line for line in stream.iter_lines() if line.startswith("data: {")]
            stream_rid = stream.headers["x-request-id"]
        missing = h.post("/v1/chat/completions", json={
            "model": "nobody", "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 404
    usage = json.loads(events[-1][6:])["usage"]

    def complete(spans: list[ReceivedSpan]) -> bool:
        ours = {s.attributes.get("llmops.request_id"): s for s in spans if s.kind == SERVER}
        return (all(r in ours for r in (rid, stream_rid, missing.headers["x-request-id"]))
                and all(_engine_child(spans, ours[r]) for r in (rid, stream_rid)))

    spans = otlp_receiver.wait_for(complete, timeout=60)
    chat = _one(spans, **{"llmops.request_id": rid})
    assert chat.name == "chat base" and chat.kind == SERVER
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "vllm"
    assert chat.attributes["gen_ai.request.model"] == "base"
    assert chat.attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert chat.attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert chat.attributes["http.response.status_code"] == 200
    assert chat.attributes["llmops.client"] == "env-1"  # the key's name ...
    assert chat.resource["service.name"] == "llmops-gateway"
    assert chat.resource["deployment.environment.name"] == "dev"
    # ... never the key, and no content unless content capture is on
    assert not any("sk-trace-canary" in json.dumps(s.attributes) for s in spans)
    assert "gen_ai.input.messages" not in chat.attributes
    assert "gen_ai.output.messages" not in chat.attributes
    # vLLM's span is the gateway span's child: one trace, across processes
    (engine,) = _engine_child(spans, chat)
    assert engine.attributes["gen_ai.usage.completion_tokens"] == answer.usage.completion_tokens

    text = _one(spans, **{"llmops.request_id": stream_rid})
    assert text.name == "text_completion base"
    assert text.attributes["gen_ai.operation.name"] == "text_completion"
    assert text.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert _engine_child(spans, text)

    refused = _one(spans, **{"llmops.request_id": missing.headers["x-request-id"]})
    assert refused.status_code == 2  # ERROR
    assert refused.attributes["error.type"] == "404"
    assert refused.attributes["gen_ai.request.model"] == "nobody"

    # the serving metrics saw the same requests, labelled by key name and model
    metrics = httpx.get(gw.url + "/metrics", timeout=10,
                        headers={"authorization": "Bearer sk-trace-metrics-5678"})
    assert metrics.status_code == 200, metrics.text
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(metrics.text) for s in f.samples}

    def value(name: str, operation: str, **extra: str) -> float | None:
        labels = {"chain": "", "gen_ai_operation_name": operation,
                  "gen_ai_request_model": "base", "key": "env-1", **extra}
        return samples.get((name, tuple(sorted(labels.items()))))

    # time to first token: the stream only; tokens: as the engine counted them
    assert value("gen_ai_server_time_to_first_token_seconds_count", "text_completion") == 1
    assert value("gen_ai_server_time_to_first_token_seconds_count", "chat") is None
    assert value("llmops_tokens_total", "chat", gen_ai_token_type="output") == (
        answer.usage.completion_tokens)
    assert value("llmops_tokens_total", "text_completion", gen_ai_token_type="input") == (
        usage["prompt_tokens"])
    assert value("llmops_request_queue_time_seconds_count", "chat") == 1


@pytest.mark.parametrize("capture", [False, True])
def test_message_content_is_on_a_span_only_when_capture_is_on(
        capture: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, with the SDK's in-memory exporter: the span the gateway ends for a row."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from llmops.serving.tracing import finish_span

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", str(capture).lower())
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("t").start_span("chat base")
    finish_span(span, {"request_id": "r1", "status": 200, "model": "base",
                       "request": json.dumps({"messages": [
                           {"role": "system", "content": "Be brief."},
                           {"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]}),
                       "response": "Hello!", "prompt_tokens": 7, "completion_tokens": 2,
                       "chain": "docs-qa", "chain_version": "3", "rollout_arm": "candidate"})
    (done,) = exporter.get_finished_spans()
    attributes = dict(done.attributes or {})
    assert attributes["llmops.chain.version"] == "3"
    assert attributes["llmops.rollout.arm"] == "candidate"
    assert attributes["gen_ai.usage.input_tokens"] == 7
    if not capture:
        assert "gen_ai.input.messages" not in attributes
        return
    assert json.loads(attributes["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hi there"}]}]
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello!"}]}]


def test_the_exporter_follows_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.telemetry import configure_tracing, shutdown_tracing

    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    try:
        # nothing set and a local store: no exporter at all
        assert configure_tracing("t", "sqlite:///x.db", "1") is None
        # an MLflow server: its OTLP endpoint, into the experiment
        setup = configure_tracing("t", "http://mlflow:5000/", "7")
        assert setup is not None and setup.sink == "mlflow"
        assert setup.endpoint == "http://mlflow:5000/v1/traces"
        # the standard variables win over MLflow
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
        setup = configure_tracing("t", "http://mlflow:5000", "7")
        assert setup is not None and setup.sink == "otlp"
        assert setup.endpoint == "http://collector:4318/v1/traces"
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        assert configure_tracing("t", "http://mlflow:5000", "7") is None
    finally:
        shutdown_tracing()
