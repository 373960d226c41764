"""The vector store: a Chroma collection, embedded on disk or on a Chroma server.

The collection itself is the record of what is indexed: every chunk's
metadata holds its document id, and its id is derived from its content. The
index version (a hash of the chunk ids) is also kept in the collection's own
metadata, so that a reader learns the version it reads with one cheap call.
"""

from __future__ import annotations

import hashlib
from typing import Any

from llmops.config import Settings
from llmops.errors import MissingExtraError, StoreUnavailableError

__all__ = [
    "VERSION_KEY",
    "index_version",
    "indexed_chunks",
    "open_client",
    "open_collection",
    "read_version",
    "recorded_version",
    "write_version",
]

_PAGE = 5000
VERSION_KEY = "llmops.index_version"
"""The collection metadata key holding the index version; empty while an update writes."""


def open_client(settings: Settings) -> Any:
    """``HttpClient`` when the environment names a Chroma server, else ``PersistentClient``."""
    try:
        import chromadb
        from chromadb.config import Settings as ChromaClientSettings
    except ImportError as exc:
        raise MissingExtraError("chromadb", "index") from exc
    opts = ChromaClientSettings(anonymized_telemetry=False)
    chroma = settings.chroma
    if chroma.host:
        try:
            client = chromadb.HttpClient(host=chroma.host, port=chroma.port, settings=opts)
            client.heartbeat()
        except Exception as exc:  # noqa: BLE001 - chromadb raises many kinds here
            raise StoreUnavailableError(
                f"cannot reach the Chroma server {chroma.host}:{chroma.port} (environment "
                f"'{settings.env}'): start it ('chroma run') or fix chroma.host in llmops.yaml"
            ) from exc
        return client
    return chromadb.PersistentClient(path=str(chroma.path), settings=opts)


def open_collection(settings: Settings, name: str, create: bool = True) -> Any:
    """The named collection (cosine distance), created on first use when ``create``."""
    client = open_client(settings)
    if create:
        return client.get_or_create_collection(
            name, metadata={"hnsw:space": "cosine"}, embedding_function=None
        )
    return client.get_collection(name, embedding_function=None)


def indexed_chunks(collection: Any) -> dict[str, str]:
    """Every chunk id in the collection with its document id, read page by page."""
    found: dict[str, str] = {}
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
        ids = page["ids"]
        for cid, meta in zip(ids, page["metadatas"] or [{}] * len(ids), strict=True):
            found[cid] = str((meta or {}).get("doc_id", ""))
        if len(ids) < _PAGE:
            return found
        offset += len(ids)


def index_version(chunk_ids: Any) -> str:
    """A content hash of the set of chunk ids: equal contents give equal versions."""
    digest = hashlib.sha256()
    for cid in sorted(chunk_ids):
        digest.update(cid.encode("ascii"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def recorded_version(collection: Any) -> str | None:
    """The version the last finished update wrote on ``collection``.

    None while an update is writing (or after one crashed), and for a collection
    no update has stamped yet: then only :func:`read_version` knows the version.
    """
    value = (collection.metadata or {}).get(VERSION_KEY)
    return str(value) if value else None


def write_version(collection: Any, version: str | None) -> None:
    """Stamp ``version`` on the collection (``None``: an update is writing, version unknown).

    Chroma replaces a collection's metadata as a whole and refuses to be told its
    distance again, so the other keys are written back and the ``hnsw:`` ones left out
    (the distance lives on in the collection's configuration).
    """
    meta = {k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")}
    meta[VERSION_KEY] = version or ""
    collection.modify(metadata=meta)


def read_version(collection: Any) -> str:
    """The collection's index version: as stamped, else computed from its chunk ids."""
    return recorded_version(collection) or index_version(indexed_chunks(collection))
