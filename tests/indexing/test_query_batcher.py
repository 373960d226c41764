"""Concurrent questions share one embedding call, with the vectors each would get alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from llmops.indexing.embedding import QueryBatcher, load_embedder

QUESTIONS = [f"How do I use feature number {i} of llmops?" for i in range(16)]


def test_concurrent_queries_are_embedded_together_and_equal_to_alone() -> None:
    embedder = load_embedder("minilm")
    alone = {q: embedder.embed([q])[0] for q in QUESTIONS}
    batcher = QueryBatcher(embedder)
    start = threading.Barrier(len(QUESTIONS))

    def ask(question: str) -> list[float]:
        start.wait(30)
        return batcher.embed_one(question)

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        got = dict(zip(QUESTIONS, pool.map(ask, QUESTIONS), strict=True))
    for question in QUESTIONS:
        assert np.allclose(got[question], alone[question], atol=1e-5)
    assert 1 <= batcher.calls < len(QUESTIONS)  # 16 questions, fewer model calls
    # an idle caller is embedded at once, alone
    before = batcher.calls
    assert np.allclose(batcher.embed_one(QUESTIONS[0]), alone[QUESTIONS[0]], atol=1e-5)
    assert batcher.calls == before + 1


class _Failing:
    """The real embedder, failing on one text (to show who gets the error)."""

    name = "failing"

    def __init__(self) -> None:
        self.real = load_embedder("minilm")

    def embed(self, texts: list[str]) -> list[list[float]]:
        if "boom" in texts:
            raise RuntimeError("the model failed")
        return self.real.embed(texts)


def test_a_failed_call_reaches_its_callers_and_the_next_call_works() -> None:
    batcher = QueryBatcher(_Failing())
    with pytest.raises(RuntimeError, match="the model failed"):
        batcher.embed_one("boom")
    assert len(batcher.embed_one("fine")) == 384
