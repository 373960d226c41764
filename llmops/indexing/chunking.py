"""Split documents into chunks with deterministic, content-derived ids.

A chunk's id is a hash of its document id, its text and which occurrence of
that text in the document it is. Equal content always gets the same id, so
the ids themselves say what is indexed: no separate bookkeeping is needed,
and editing one part of a document leaves the ids of its other chunks alone.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llmops.config import IndexConfig
from llmops.errors import MissingExtraError
from llmops.indexing.sources import SourceDocument

__all__ = ["Chunk", "chunk_id", "make_splitter", "split_documents"]


@dataclass(frozen=True)
class Chunk:
    id: str
    doc_id: str
    text: str
    position: int

    @property
    def metadata(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "position": self.position, "source": self.doc_id}


def chunk_id(doc_id: str, text: str, occurrence: int) -> str:
    """``sha256(doc_id, text, occurrence)``, 32 hex characters."""
    digest = hashlib.sha256()
    for part in (doc_id, text, str(occurrence)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def make_splitter(config: IndexConfig) -> Any:
    """The LangChain text splitter the config names."""
    try:
        from langchain_text_splitters import MarkdownTextSplitter, RecursiveCharacterTextSplitter
    except ImportError as exc:
        raise MissingExtraError("langchain-text-splitters", "index") from exc
    overlap = min(config.chunk_overlap, config.chunk_size // 2)
    cls = MarkdownTextSplitter if config.splitter == "markdown" else RecursiveCharacterTextSplitter
    return cls(chunk_size=config.chunk_size, chunk_overlap=overlap)


def split_documents(docs: Iterable[SourceDocument], config: IndexConfig) -> list[Chunk]:
    """Every chunk of every document, in document order."""
    splitter = make_splitter(config)
    chunks: list[Chunk] = []
    for doc in docs:
        seen: Counter[str] = Counter()
        for position, text in enumerate(splitter.split_text(doc.text)):
            if not text.strip():
                continue
            occurrence = seen[text]
            seen[text] += 1
            chunks.append(Chunk(chunk_id(doc.id, text, occurrence), doc.id, text, position))
    return chunks
