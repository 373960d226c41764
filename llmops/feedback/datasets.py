"""Datasets built from human feedback: the ``feedback`` table joined with ``inference_log``.

- ``eval``: inputs with an expected answer (a correction, or an answer rated good),
  each row keeping its lineage (request id, chain / prompt / model versions);
- ``sft``: prompt/completion pairs (corrections, and answers rated good);
- ``kto``: prompt/completion/label rows from thumbs and scores (KTO trains on unpaired labels).

SFT and KTO rows carry ``messages``: the messages the model was served, read from
the request's ``messages`` (a chain call logs ``{"question", "messages"}``, the
rendered system prompt, retrieved context and question; a chat completion logs
the OpenAI body). Fine-tuning trains on them, so an adapter learns the prompt it
is asked in production. Rows logged before chains returned their messages hold
only the question: they get no ``messages`` and train on the bare question.
``prompt`` is always the question (a chat's last user message).

The latest feedback per request wins, identical pairs collapse to one row, and a
redaction hook runs over every text before anything is written: the environment's
redaction (``llmops.privacy``, Presidio) where it redacts, then ``redact`` (by default
``redact_personal_data``, a regex for e-mail addresses and phone numbers).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from llmops.config import Settings, load_settings
from llmops.errors import LlmopsError
from llmops.lakehouse import read_table
from llmops.privacy import redactor_for

__all__ = ["DatasetReport", "build_dataset", "redact_personal_data"]

Kind = Literal["eval", "sft", "kto"]
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)")


def redact_personal_data(text: str) -> str:
    """The default redaction hook: e-mail addresses and phone numbers become placeholders."""
    return _PHONE.sub("[PHONE]", _EMAIL.sub("[EMAIL]", text))


@dataclass
class DatasetReport:
    kind: str
    out: Path
    rows: int
    feedback_rows: int
    requests: int
    duplicates: int


_LINEAGE = (
    ("request_id", "request_id"), ("feedback_id", "feedback_id"), ("chain", "chain"),
    ("chain_version", "chain_version"), ("prompt_name", "prompt"),
    ("prompt_version", "prompt_version"), ("model", "model"), ("adapter", "adapter"),
)


def _plain(value: Any) -> Any:
    """Missing values (pandas NaN / None) as None; everything else as is."""
    return None if value is None or (isinstance(value, float) and value != value) else value


def _good(rating: Any, score: Any) -> bool | None:
    """Thumbs (``rating`` 1 / -1) decide; without them a 1-5 ``score`` of 4-5 is good, 1-2 bad."""
    rating, score = _plain(rating), _plain(score)
    if rating is not None:
        return int(rating) > 0
    if score is not None:
        return True if score >= 4 else False if score <= 2 else None
    return None


def _served(messages: Any) -> list[dict[str, str]] | None:
    """Logged messages as ``{"role", "content"}`` string pairs; None unless all of them are."""
    if not isinstance(messages, list) or not messages:
        return None
    out = []
    for m in messages:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            return None
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _question(request: str) -> tuple[str, list[dict[str, str]] | None]:
    """The input of a logged request and the messages served for it (None if not logged).

    The question is a chain's ``question``, or a chat's last user message.
    """
    try:
        body = json.loads(request or "{}")
    except ValueError:
        return request or "", None
    if not isinstance(body, dict):
        return str(request or ""), None
    messages = _served(body.get("messages"))
    if isinstance(body.get("question"), str):
        return body["question"], messages
    if isinstance(body.get("messages"), list):
        users = [m.get("content", "") for m in body["messages"] if isinstance(m, dict)
                 and m.get("role") == "user" and isinstance(m.get("content"), str)]
        return (users[-1] if users else ""), messages
    return str(body.get("prompt", "")), None


def _utc(when: datetime) -> datetime:
    """``when`` with a time zone (a naive time is UTC, as the tables store it)."""
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _cleaner(redact: Callable[[str], str] | None, settings: Settings) -> Callable[[str], str]:
    """``redact``, after the environment's own redaction where it redacts (whatever the hook:
    rows logged before redaction was switched on hold personal data still)."""
    hook = redact or (lambda text: text)
    redactor = redactor_for(settings)
    if redactor is None:
        return hook
    return lambda text: hook(redactor.redact(text))


def build_dataset(
    kind: Kind,
    out: Path,
    settings: Settings | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    chain: str | None = None,
    model: str | None = None,
    adapter: str | None = None,
    redact: Callable[[str], str] | None = redact_personal_data,
) -> DatasetReport:
    """Write the ``kind`` dataset to ``out`` (JSON lines, replaced atomically).

    With the environment's ``retention_days`` set, feedback and requests older than that
    are never read, even while still in the tables (before ``llmops tables retain`` runs).
    """
    if kind not in ("eval", "sft", "kto"):
        raise LlmopsError(f"unknown dataset kind '{kind}': use eval, sft or kto")
    settings = settings or load_settings()
    # nothing older than the environment's retention, whether or not `tables retain` has run
    kept_since = (datetime.now(timezone.utc) - timedelta(days=settings.retention_days)
                  if settings.retention_days else None)
    if kept_since is not None and (since is None or _utc(since) < kept_since):
        since = kept_since
    feedback = read_table(settings.lakehouse, "feedback", since=since, until=until)
    n_feedback = len(feedback)
    # only the requests this feedback rates (a request is older than its feedback: no window)
    log = read_table(settings.lakehouse, "inference_log", request_ids=feedback["request_id"],
                     since=kept_since)
    # the latest piece of feedback on a request wins
    feedback = feedback.sort_values("ts").drop_duplicates("request_id", keep="last")
    log = log[log["status"] == 200].drop_duplicates("request_id", keep="last")
    for column, wanted in (("chain", chain), ("model", model), ("adapter", adapter)):
        if wanted is not None:
            log = log[log[column] == wanted]
    joined = feedback.merge(log, on="request_id", suffixes=("_feedback", ""))
    clean = _cleaner(redact, settings)

    rows: list[dict[str, Any]] = []
    for rec in joined.sort_values("ts").to_dict("records"):
        question, messages = _question(_plain(rec.get("request")) or "")
        served = ({"messages": [{**m, "content": clean(m["content"])} for m in messages]}
                  if messages else {})
        answer = _plain(rec.get("response")) or ""
        correction = rec.get("correction") if isinstance(rec.get("correction"), str) else None
        good = _good(rec.get("rating"), rec.get("score"))
        lineage = {key: _plain(rec.get(column)) for key, column in _LINEAGE}
        if kind in ("eval", "sft"):
            if correction:
                target, origin = correction, "correction"
            elif good:
                target, origin = answer, "rated_good"
            else:
                continue
            if kind == "eval":
                rows.append({"question": clean(question), "expected": clean(target),
                             "origin": origin, **lineage})
            else:
                rows.append({"prompt": clean(question), **served, "completion": clean(target),
                             "origin": origin, **lineage})
        else:
            if good is not None:
                rows.append({"prompt": clean(question), **served, "completion": clean(answer),
                             "label": good, **lineage})
            if correction:
                rows.append({"prompt": clean(question), **served,
                             "completion": clean(correction), "label": True, **lineage})
    # identical examples collapse to one (the latest)
    seen: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(rows):
        key = tuple(row[k] for k in ("question", "expected") if k in row) or tuple(
            json.dumps(row.get(k)) for k in ("prompt", "messages", "completion", "label"))
        seen[key] = i
    kept = [rows[i] for i in sorted(seen.values())]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for row in kept:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, out)
    return DatasetReport(kind, out, len(kept), n_feedback, int(joined["request_id"].nunique()),
                         len(rows) - len(kept))
