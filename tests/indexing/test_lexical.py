"""BM25, rank fusion, and the hybrid retriever on a real Chroma collection."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from llmops.indexing.lexical import BM25Index, reciprocal_rank_fusion, tokenize


def test_tokenize_keeps_identifiers_and_drops_function_words() -> None:
    assert tokenize("Which table holds the inference_log rows?") == [
        "table", "holds", "inference_log", "rows"]


def test_bm25_prefers_rare_exact_terms() -> None:
    texts = ["the gateway writes inference_log rows",
             "the gateway and the engine start together",
             "the engine serves the model"]
    index = BM25Index(texts)
    assert index.top("where is inference_log written", 3) == [0]
    assert index.top("engine", 3) == [2, 1]  # the shorter text first (length normalisation)
    assert index.top("nothing matches here", 3) == []


def test_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["d", "b", "e"]])
    assert fused[0] == "b" and set(fused) == {"a", "b", "c", "d", "e"}
    assert fused[1:3] == ["a", "d"] and fused[3:] == ["c", "e"]  # ties: first seen first


@given(st.lists(st.text(max_size=40), max_size=8), st.text(max_size=30))
def test_bm25_never_fails_and_ranks_only_matches(texts: list[str], query: str) -> None:
    index = BM25Index(texts)
    top = index.top(query, 5)
    assert len(top) == len(set(top)) <= 5
    words = set(tokenize(query))
    assert all(words & set(tokenize(texts[i])) for i in top)


def test_hybrid_finds_the_chunk_embeddings_miss(index_settings, corpus: Path) -> None:
    """A rare exact term ranks its chunk first in hybrid search, on a real collection."""
    from llmops.indexing import update_index
    from llmops.indexing.retriever import IndexRetriever

    (corpus / "exit.md").write_text(
        "# Exit codes\n\nWhen a threshold is crossed, the monitor exits with status "
        "zx_threshold_code 3.\n")
    update_index(index_settings, progress=False)
    question = "which zx_threshold_code"
    hybrid = IndexRetriever(collection="docs", chroma=index_settings.chroma, k=2)
    got = hybrid.invoke(question)
    assert len(got) == 2 and got[0].metadata["doc_id"] == "exit.md"
    assert "zx_threshold_code" in got[0].page_content

    # the lexical index follows the collection: a new document is found after an update
    (corpus / "late.md").write_text("# Late\n\nThe qq_latecomer flag arrived after.\n")
    update_index(index_settings, progress=False)
    assert hybrid.invoke("qq_latecomer")[0].metadata["doc_id"] == "late.md"
