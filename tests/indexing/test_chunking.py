from __future__ import annotations

from llmops.config import IndexConfig
from llmops.indexing.chunking import chunk_id, split_documents
from llmops.indexing.sources import SourceDocument

CFG = IndexConfig(chunk_size=120, chunk_overlap=0)


def test_ids_are_deterministic_and_content_derived() -> None:
    doc = SourceDocument("a.md", "# A\n\n" + "alpha beta gamma. " * 30)
    first = split_documents([doc], CFG)
    assert len(first) > 3
    assert [c.id for c in first] == [c.id for c in split_documents([doc], CFG)]
    assert len({c.id for c in first}) == len(first)
    other = split_documents([SourceDocument("b.md", doc.text)], CFG)
    assert not {c.id for c in first} & {c.id for c in other}


def test_editing_one_part_keeps_the_other_ids() -> None:
    parts = [f"## Part {i}\n\n" + f"Paragraph {i} text. " * 5 for i in range(6)]
    before = split_documents([SourceDocument("d.md", "\n\n".join(parts))], CFG)
    parts[0] = "## Part 0\n\nA new opening paragraph that is different. " * 2
    after = split_documents([SourceDocument("d.md", "\n\n".join(parts))], CFG)
    kept = {c.id for c in before} & {c.id for c in after}
    assert len(kept) >= len(before) - 2
    assert {c.id for c in after} - kept


def test_repeated_text_in_one_document_gets_distinct_ids() -> None:
    assert chunk_id("d", "same", 0) != chunk_id("d", "same", 1)
    text = "\n\n".join(["## Same\n\nrepeated block " * 3] * 3)
    chunks = split_documents([SourceDocument("r.md", text)], CFG)
    assert len({c.id for c in chunks}) == len(chunks)
