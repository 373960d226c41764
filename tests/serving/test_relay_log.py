"""The stream relay's log: whatever the read boundaries, the row holds the stream's text.

The relay passes the engine's bytes on as they arrive and parses them for the log in
batches; these tests feed it SSE streams cut at arbitrary points. The relay's parser is
tested alone here (its rows go to a recorder instead of the write-ahead log); the real
streams through a real gateway and engine are in ``test_gateway.py``.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmops.serving import proxy
from llmops.serving.proxy import _Relay


class _Rows:
    """Records the rows the relay logs (in place of the gateway's state)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.observed: list[dict[str, Any]] = []

    def log(self, row: dict[str, Any], **observed: Any) -> None:
        self.rows.append(row)
        self.observed.append(observed)  # first_token_s, queue_s, span: the metrics' inputs


def _event(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _stream(pieces: list[str], usage: dict[str, int] | None, done: bool = True) -> bytes:
    out = [_event({"choices": [{"index": 0, "delta": {"content": p}}]}) for p in pieces]
    if usage is not None:
        out.append(_event({"choices": [], "usage": usage}))
    if done:
        out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def _relay() -> tuple[_Relay, _Rows]:
    rows = _Rows()
    return _Relay(None, {"request_id": "r"}, 0.0, rows), rows  # type: ignore[arg-type]


def _cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# texts that look like the stream's own syntax: the end event, line breaks, "data: "
_TEXT = st.lists(st.sampled_from(["[DONE]", "data: [DONE]", "\n", "\r\n", "data: ", "a", " ",
                                   "{}", "\"", "\\", "é", "\n\ndata: [DONE]\n\n"]),
                 max_size=6).map("".join)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_TEXT, max_size=20), points=st.lists(st.integers(0, 10**6), max_size=12),
       completion=st.integers(0, 5000))
def test_any_read_boundaries_log_the_whole_text_and_see_the_end_once(
        pieces: list[str], points: list[int], completion: int) -> None:
    data = _stream(pieces, {"prompt_tokens": 7, "completion_tokens": completion})
    relay, rows = _relay()
    reads = _cut(data, points)
    ends = [i for i, raw in enumerate(reads) if relay.feed(raw)]
    # the end is seen once, in the read that completes "data: [DONE]" (only "\n\n" follows)
    consumed = 0
    for i, raw in enumerate(reads):
        consumed += len(raw)
        if consumed >= len(data) - len(b"\n\n"):
            assert ends == [i]
            break
    relay.log(200)
    assert len(rows.rows) == 1
    row = rows.rows[0]
    assert row["response"] == "".join(pieces)
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"]) == (200, 7, completion)


def test_a_stream_cut_short_logs_the_text_that_came_and_counts_its_chunks() -> None:
    data = _stream(["Hel", "lo", " there"], usage=None, done=False)
    relay, rows = _relay()
    cut = data.index(b" there") - 20  # the last event arrives only in part
    assert relay.feed(data[:cut]) is False
    relay.log(499)
    assert rows.rows[0]["response"] == "Hello"
    assert (rows.rows[0]["status"], rows.rows[0]["completion_tokens"]) == (499, 2)
    assert rows.observed[0]["first_token_s"] is None  # a cut stream gives no time to first token


def test_an_event_that_is_not_json_is_skipped_and_the_others_are_kept() -> None:
    data = (_event({"choices": [{"delta": {"content": "one"}}]}) + b"data: {not json\n\n"
            + b": a comment\n\n" + _event({"choices": [{"text": " two"}]})
            + b"data: [1, 2]\n\n" + b"data: [DONE]\n\n")
    relay, rows = _relay()
    assert relay.feed(data) is True
    relay.log(200)
    assert rows.rows[0]["response"] == "one two"
    assert rows.rows[0]["completion_tokens"] == 2
    assert rows.observed[0]["first_token_s"] > 0  # from the first bytes the engine sent


def test_a_long_stream_is_parsed_as_it_goes_not_held_whole(monkeypatch: Any) -> None:
    monkeypatch.setattr(proxy, "_PARSE_AT", 1024)
    relay, rows = _relay()
    event = _event({"choices": [{"delta": {"content": "x" * 50}}]})
    for _ in range(400):
        relay.feed(event)
        assert relay._size < 1024 + len(event)  # the buffer stays bounded
    assert relay.chunks >= 400 - 1024 // len(event) - 1  # parsed on the way, not at the end
    relay.feed(b"data: [DONE]\n\n")
    relay.log(200)
    assert rows.rows[0]["response"] == "x" * 50 * 400
