"""The vector-database update job: an incremental, crash-safe sync of a Chroma collection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmops.config import IndexConfig

if TYPE_CHECKING:
    from llmops.indexing.job import IndexReport, update_index
    from llmops.indexing.retriever import IndexRetriever

__all__ = ["IndexConfig", "IndexReport", "IndexRetriever", "current_index_version", "update_index"]

_LAZY = {
    "IndexReport": "llmops.indexing.job",
    "update_index": "llmops.indexing.job",
    "IndexRetriever": "llmops.indexing.retriever",
    "current_index_version": "llmops.indexing.versions",
}


def __getattr__(name: str) -> Any:
    # The job pulls in chromadb and sentence-transformers: load it on first use only,
    # so that reading the project config stays cheap.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmops.indexing' has no attribute {name!r}")
