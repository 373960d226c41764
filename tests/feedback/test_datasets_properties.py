"""Property-based tests of ``build_dataset``: whatever text the inference log and the feedback
hold (arbitrary requests, answers, corrections, ratings and scores the tables accept), building
any dataset never crashes, and every output line is a JSON object with the documented keys."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops.feedback import build_dataset
from llmops.lakehouse import append_rows

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
LINEAGE = {"request_id", "feedback_id", "chain", "chain_version", "prompt_name",
           "prompt_version", "model", "adapter"}
KEYS = {"eval": {"question", "expected", "origin"},
        "sft": {"prompt", "completion", "origin"},
        "kto": {"prompt", "completion", "label"}}

text = st.text(max_size=40)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8)
message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                           "content": text}),
    json_value)
# what a request column may hold: a chain's call, a chat's body, a completion's, or any text
request = st.one_of(
    st.builds(lambda q, m: json.dumps({"question": q, **({"messages": m} if m else {})}),
              text, st.none() | st.lists(message, max_size=3)),
    st.builds(lambda m: json.dumps({"model": "base", "messages": m}), st.lists(message, max_size=3)),
    st.builds(lambda p: json.dumps({"model": "base", "prompt": p}), json_value),
    json_value.map(json.dumps),
    text,
)
log_entry = st.fixed_dictionaries({
    "request": request, "response": st.none() | text,
    "status": st.sampled_from([200, 200, 400, 503]),
    "chain": st.none() | st.sampled_from(["docs-qa", "other"]),
})
feedback_entry = st.fixed_dictionaries({
    "target": st.integers(0, 5), "minutes": st.integers(0, 30),
    "rating": st.none() | st.sampled_from([-1, 1]), "score": st.none() | st.integers(1, 5),
    "correction": st.none() | text, "comment": st.none() | text,
})
counter = itertools.count()


def _write(lake: Path, logs: list[dict[str, Any]], feedback: list[dict[str, Any]]) -> None:
    if logs:
        append_rows(lake, "inference_log", [
            {"request_id": f"r{i}", "ts": T0, "env": "dev", "endpoint": "/v1/chat/completions",
             "model": "base", "chain_version": "1", "latency_ms": 1.0, **entry}
            for i, entry in enumerate(logs)])
    if feedback:
        append_rows(lake, "feedback", [
            {"feedback_id": f"f{i}", "request_id": f"r{f.pop('target')}",
             "ts": T0 + timedelta(minutes=f.pop("minutes")), "source": "api", **f}
            for i, f in enumerate(feedback)])


def _check_line(kind: str, line: str) -> None:
    row = json.loads(line)
    assert isinstance(row, dict)
    assert set(row) - {"messages"} == KEYS[kind] | LINEAGE, set(row)
    for key in KEYS[kind] - {"label"}:
        assert isinstance(row[key], str), (key, row[key])
    if kind == "kto":
        assert isinstance(row["label"], bool)
    else:
        assert row["origin"] in ("correction", "rated_good")
    if "messages" in row:
        assert kind != "eval"
        assert row["messages"] and all(
            set(m) == {"role", "content"} and isinstance(m["role"], str)
            and isinstance(m["content"], str) for m in row["messages"])
    assert row["request_id"].startswith("r") and row["feedback_id"].startswith("f")


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(logs=st.lists(log_entry, max_size=6), feedback=st.lists(feedback_entry, max_size=8),
       kind=st.sampled_from(["eval", "sft", "kto"]), redact=st.booleans())
def test_any_logged_text_builds_a_valid_dataset(tmp_path: Path, settings, logs, feedback,
                                                kind: str, redact: bool) -> None:
    folder = tmp_path / f"ex{next(counter)}"
    lake = folder / "lakehouse"
    _write(lake, logs, feedback)
    out = folder / f"{kind}.jsonl"
    kwargs = {} if redact else {"redact": None}
    report = build_dataset(kind, out, settings.model_copy(update={"lakehouse": lake}), **kwargs)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == report.rows
    for line in lines:
        _check_line(kind, line)
