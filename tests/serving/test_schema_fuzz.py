"""Schema fuzzing: schemathesis against a real ``llmops serve`` gateway (its own ``/openapi.json``)
in front of the session's real vLLM engine.

Every operation of the published schema is fuzzed with positive and negative cases (a fixed
number of examples, derandomized: the same cases every run, no shrinking), and every response
must be no 5xx, a documented status and a body in the documented schema. Admin routes are
called without a key (401 only). The engine's load stays small: the fuzz gateway caps
``max_tokens`` at 8 (the schema says so, and a request without it gets 8).

Afterwards, every row the gateway wrote must fit its lakehouse table: nothing quarantined,
every acknowledged request and feedback in its table, every row passing ``check_row``.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from llmops.lakehouse import TABLES, check_row
from tests.serving.conftest import read_rows

KEY = "fuzz-invoke-feedback-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# examples per operation and generation mode: the routes that reach the engine or the log get
# the most; the static and health routes take no input but a key
EXAMPLES = {"/v1/chat/completions": 20, "/v1/completions": 20, "/v1/feedback": 25,
            "/v1/chains/{name}/invoke": 12, "/v1/models": 5}
OTHER_EXAMPLES = 3
LOGGED = ("/v1/chat/completions", "/v1/completions", "/v1/chains/")


def _post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    req = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                 headers={**AUTH, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, resp.headers["X-Request-Id"]


def _plain(value: Any) -> Any:
    """A value read back through pandas as the Python value ``check_row`` expects."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    return value


def _rows(project: Path, table: str) -> list[dict[str, Any]]:
    out = []
    for rec in read_rows(project, table).to_dict("records"):
        row = {k: _plain(v) for k, v in rec.items()}
        for name, kind in TABLES[table].items():  # ints with nulls come back as floats
            if kind.startswith("int") and isinstance(row.get(name), float):
                assert row[name].is_integer(), (table, name, row[name])
                row[name] = int(row[name])
        out.append(row)
    return out


def test_gateway_survives_schema_fuzzing(start_gateway, project: Path) -> None:
    started = time.monotonic()
    gw = start_gateway(max_tokens_cap=8, env={"LLMOPS_API_KEYS": f"{KEY}=invoke,feedback"})
    schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models",
        "POST /v1/chains/{name}/invoke", "POST /v1/feedback", "POST /admin/adapters/load",
        "POST /admin/adapters/unload", "GET /healthz", "GET /readyz"}
    # the caps the schema states are this gateway's
    chat = schema["/v1/chat/completions"]["POST"].definition.raw
    body_schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["properties"]["max_tokens"]["maximum"] == 8

    # real request ids, so that feedback cases can reach the 200 path (and the feedback table)
    status, request_id = _post(gw.url + "/v1/chat/completions", {
        "model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert status == 200
    known_ids = [request_id]

    logged: set[str] = set(known_ids)  # request ids the gateway must have logged
    acknowledged: set[str] = set()  # feedback ids answered 200
    counts: dict[str, int] = {}

    def with_model(pair: tuple[Any, bool]) -> Any:
        case, real = pair
        if real and isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = "base"  # most cases reach the engine, not the 404
        return case

    def with_request_id(pair: tuple[Any, bool]) -> Any:
        case, real = pair
        if real and isinstance(case.body, dict) and "request_id" in case.body:
            case.body["request_id"] = known_ids[0]
        return case

    def run(op: Any, mode: GenerationMode) -> None:
        admin = op.path.startswith("/admin/")
        strategy = op.as_strategy(generation_mode=mode)
        if op.path in ("/v1/chat/completions", "/v1/completions"):
            strategy = st.tuples(strategy, st.integers(0, 3).map(bool)).map(with_model)
        elif op.path == "/v1/feedback":
            strategy = st.tuples(strategy, st.integers(0, 2).map(bool)).map(with_request_id)

        @settings(max_examples=EXAMPLES.get(op.path, OTHER_EXAMPLES), derandomize=True,
                  database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            if admin:  # never with a key: 401 before the body is read
                response = case.call_and_validate(base_url=gw.url, checks=CHECKS, timeout=60)
                assert response.status_code == 401, response.text
            else:
                response = case.call_and_validate(base_url=gw.url, headers=AUTH, checks=CHECKS,
                                                  timeout=60)
            counts[op.label] = counts.get(op.label, 0) + 1
            rid = response.headers.get("X-Request-Id")
            if (rid and op.path.startswith(LOGGED)
                    and response.status_code not in (401, 403, 408, 413, 415, 429)):
                logged.add(rid)
            if op.path == "/v1/feedback" and response.status_code == 200:
                acknowledged.add(response.json()["feedback_id"])

        fuzz()

    for op in operations:
        run(op, GenerationMode.POSITIVE)
        if len(op.body):
            run(op, GenerationMode.NEGATIVE)

    # found by hand, not by the fuzzer: a rating of 1.0 was acknowledged, then quarantined
    # (the column is an integer); it must be refused before it is acknowledged
    feedback_op = schema["/v1/feedback"]["POST"]
    for rating in (1.0, -1.0):
        case = feedback_op.Case(body={"request_id": known_ids[0], "rating": rating})
        response = case.call_and_validate(base_url=gw.url, headers=AUTH, checks=CHECKS,
                                                  timeout=60)
        assert response.status_code == 400, response.text
    # the attacks of docs/serving.md's security section that fit a request body: each is a
    # documented 400, refused before the engine or the log sees it
    chat_op = schema["/v1/chat/completions"]["POST"]
    empty = {"role": "user", "content": ""}
    parts = {"role": "user", "content": [{"type": "text", "text": ""}] * 300}
    for attack in ({"messages": [empty] * 300}, {"messages": [parts]},
                   {"messages": [empty], "logit_bias": {"1": 100}},
                   {"messages": [empty], "prompt_logprobs": 20},
                   {"messages": [empty], "vllm_xargs": {"x": 1}},
                   {"messages": [empty], "priority": -100}):
        case = chat_op.Case(body={"model": "base", **attack})
        response = case.call_and_validate(base_url=gw.url, headers=AUTH, checks=CHECKS,
                                          timeout=60)
        assert response.status_code == 400, (sorted(attack), response.text)
    # a cross-site "simple" POST (text/plain, no preflight) is refused, whatever it holds
    plain = urllib.request.Request(
        gw.url + "/v1/feedback", json.dumps({"request_id": known_ids[0], "rating": 1}).encode(),
        method="POST", headers={**AUTH, "content-type": "text/plain"})
    try:
        urllib.request.urlopen(plain, timeout=60)
        raise AssertionError("a text/plain body was accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 415
    fuzzed = time.monotonic() - started
    assert acknowledged, "no fuzzed feedback reached the 200 path"

    # every row written fits its table; none was quarantined; nothing acknowledged is missing
    deadline = time.monotonic() + 30
    while True:
        log_rows, feedback_rows = _rows(project, "inference_log"), _rows(project, "feedback")
        if ({r["request_id"] for r in log_rows} >= logged
                and {r["feedback_id"] for r in feedback_rows} >= acknowledged):
            break
        quarantined = sorted(str(p) for p in project.rglob("quarantine/**/*.jsonl"))
        assert not quarantined, f"rows that break their table's schema: {quarantined}"
        assert time.monotonic() < deadline, (
            f"missing after 30 s: {len(logged - {r['request_id'] for r in log_rows})} log rows, "
            f"{len(acknowledged - {r['feedback_id'] for r in feedback_rows})} feedback rows")
        time.sleep(0.3)
    assert not list(project.rglob("quarantine/**/*.jsonl"))
    for table, rows in (("inference_log", log_rows), ("feedback", feedback_rows)):
        for row in rows:
            assert set(row) == set(TABLES[table]), (table, set(row) ^ set(TABLES[table]))
            check_row(table, row)
            assert isinstance(row["ts"], datetime)
    print(f"\nfuzzed {sum(counts.values())} cases in {fuzzed:.0f} s: {counts}; "
          f"{len(log_rows)} log rows, {len(feedback_rows)} feedback rows")
