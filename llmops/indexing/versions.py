"""The index version of a collection as it is now."""

from __future__ import annotations

from llmops.config import Settings
from llmops.errors import IndexingError, StoreUnavailableError
from llmops.indexing.store import index_version, indexed_chunks, open_collection

__all__ = ["current_index_version"]


def current_index_version(settings: Settings, collection: str) -> tuple[str, int]:
    """``(index version, chunk count)`` of the collection; an error if it is missing or empty."""
    try:
        coll = open_collection(settings, collection, create=False)
    except (IndexingError, StoreUnavailableError):
        raise
    except Exception as exc:  # noqa: BLE001 - chromadb's NotFoundError varies by version
        raise IndexingError(
            f"collection '{collection}' does not exist in environment '{settings.env}': "
            "run 'llmops index update' first"
        ) from exc
    ids = indexed_chunks(coll)
    if not ids:
        raise IndexingError(
            f"collection '{collection}' is empty in environment '{settings.env}': "
            "run 'llmops index update' first"
        )
    return index_version(ids), len(ids)
