"""A project whose gateway has collected feedback on the docs chain: the golden set's
questions answered, half rated good, half corrected with the reference answer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import REPO

T0 = datetime.now(timezone.utc) - timedelta(hours=1)


def golden(n: int) -> list[dict]:
    rows = [json.loads(line) for line in (REPO / "evals" / "golden.jsonl").read_text().splitlines()]
    return rows[:n]


def collect_feedback(settings, rows: list[dict], prompt_version: str = "1") -> None:
    """Rows of ``inference_log`` and ``feedback`` as the gateway writes them: every other
    answer is wrong and corrected, the others are the reference answer, rated good."""
    from llmops.lakehouse import append_rows

    logs, feedback = [], []
    for i, row in enumerate(rows):
        rid = f"req-{i}"
        good = i % 2 == 0
        logs.append({"request_id": rid, "ts": T0, "env": settings.env,
                     "endpoint": "/v1/chains/docs-qa/invoke", "model": "base",
                     "chain": "docs-qa", "chain_version": "1", "prompt": "qa",
                     "prompt_version": prompt_version,
                     "request": json.dumps({"question": row["question"]}),
                     "response": row["expected"] if good else "I do not know.", "status": 200,
                     "latency_ms": 10.0})
        feedback.append({"feedback_id": f"fb-{i}", "request_id": rid,
                         "ts": T0 + timedelta(minutes=1), "rating": 1 if good else -1,
                         "score": None, "correction": None if good else row["expected"],
                         "source": "api", "user": f"user-{i}"})
    append_rows(settings.lakehouse, "inference_log", logs)
    append_rows(settings.lakehouse, "feedback", feedback)


@pytest.fixture
def qa_registered(settings, docs_indexed: Path):
    """qa/1 @production and the docs indexed (the chain's retriever reads them)."""
    from llmops.indexing import update_index
    from llmops.prompts import set_alias, sync_prompts

    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    return settings
