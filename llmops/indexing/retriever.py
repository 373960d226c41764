"""Retrieve the top-k chunks for a question from a collection (a LangChain retriever).

``search="hybrid"`` (the default) fuses the embedding neighbours with a BM25
ranking of the same collection (see ``lexical.py``); ``"dense"`` uses the
embeddings alone.

The retriever reads the collection as it is at query time, whatever version a
chain was logged with, and says which version that was: every document it
returns carries ``metadata["index_version"]``, read from the collection's
metadata with the query (see ``store.read_version``).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from llmops.config import ChromaSettings
from llmops.errors import IndexingError
from llmops.indexing.lexical import BM25Index, reciprocal_rank_fusion
from llmops.indexing.store import index_version, indexed_chunks, recorded_version

__all__ = ["IndexRetriever"]

_open_lock = threading.Lock()


class IndexRetriever(BaseRetriever):
    """Top-k cosine neighbours of the question in a Chroma collection.

    Everything it needs is in its fields, so a logged chain can rebuild it
    without the project's settings.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    collection: str
    chroma: ChromaSettings
    embedder: str = "minilm"
    k: int = 3
    search: Literal["dense", "hybrid"] = "hybrid"
    candidates: int = 20  # per ranking, before fusion
    lexical_refresh_s: float = 30.0  # the BM25 index is rebuilt when the collection changes
    version_refresh_s: float = 5.0  # how long a version computed from chunk ids is reused
    _client: Any = PrivateAttr(default=None)
    _seen: Any = PrivateAttr(default=None)  # the stamp last seen (embedded Chroma only)
    _computed: Any = PrivateAttr(default=None)  # (count, monotonic time, version)
    _embedder: Any = PrivateAttr(default=None)
    _lexical: Any = PrivateAttr(default=None)
    _lexical_key: Any = PrivateAttr(default=None)
    _lexical_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def _open(self) -> tuple[Any, Any]:
        """The collection as it is now (a fresh handle, so its metadata is current) and the
        embedder."""
        # chain.batch() runs rows in threads; chromadb's client registry is not
        # safe to populate from two threads at once.
        with _open_lock:
            if self._client is None:
                from llmops.indexing.embedding import load_embedder

                # Embedded Chroma keeps its vector index in the memory of the process
                # that opened the store and never sees another process's writes (an
                # 'llmops index update' run next to a serving gateway): the retriever
                # opens the store afresh at first, and again whenever the version changes.
                self._client = self._new_client(fresh=True)
                from llmops.indexing.embedding import QueryBatcher

                # concurrent questions (chain.batch, an evaluation) share one model call
                self._embedder = QueryBatcher(load_embedder(self.embedder))
            coll = self._collection()
            if not self.chroma.host:
                stamp = recorded_version(coll) or ""
                if self._seen is not None and stamp != self._seen:
                    self._client = self._new_client(fresh=True)
                    coll = self._collection()
                    stamp = recorded_version(coll) or ""
                self._seen = stamp
            return coll, self._embedder

    def _new_client(self, fresh: bool = False) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaClientSettings

        opts = ChromaClientSettings(anonymized_telemetry=False)
        if self.chroma.host:
            return chromadb.HttpClient(host=self.chroma.host, port=self.chroma.port, settings=opts)
        if fresh:
            from chromadb.api.client import SharedSystemClient

            # clients made from now on get a new store; those already made keep theirs
            SharedSystemClient.clear_system_cache()
        return chromadb.PersistentClient(path=str(self.chroma.path), settings=opts)

    def _collection(self) -> Any:
        try:
            return self._client.get_collection(self.collection, embedding_function=None)
        except Exception as exc:  # noqa: BLE001 - chromadb's NotFoundError varies by version
            raise IndexingError(
                f"collection '{self.collection}' does not exist: run 'llmops index update'"
            ) from exc

    def current_version(self, coll: Any = None) -> str:
        """The index version of the collection now: as the last finished update stamped it,
        else (an update is writing, or none stamped it yet) computed from its chunk ids."""
        coll = coll if coll is not None else self._open()[0]
        stamped = recorded_version(coll)
        if stamped:
            return stamped
        count, now = coll.count(), time.monotonic()
        cached = self._computed
        if cached is None or cached[0] != count or now - cached[1] > self.version_refresh_s:
            cached = self._computed = (count, now, index_version(indexed_chunks(coll)))
        return str(cached[2])

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        coll, embedder = self._open()
        version = self.current_version(coll)
        n = self.k if self.search == "dense" else max(self.k, self.candidates)
        result = coll.query(
            query_embeddings=[embedder.embed_one(query)], n_results=n,
            include=["documents", "metadatas", "distances"],
        )
        found: dict[str, Document] = {}
        for cid, text, meta, dist in zip(result["ids"][0], result["documents"][0],
                                         result["metadatas"][0], result["distances"][0],
                                         strict=True):
            if text is None:  # deleted since the vector index was loaded
                continue
            found[cid] = Document(page_content=text, metadata={**(meta or {}), "distance": dist,
                                                               "index_version": version})
        dense = list(found)
        if self.search == "dense":
            return [found[cid] for cid in dense[: self.k]]
        ids, texts, metas, bm25 = self._lexical_index(coll, version)
        top = bm25.top(query, n)
        lexical = [ids[i] for i in top]
        for i in top:
            found.setdefault(ids[i], Document(page_content=texts[i], metadata={
                **(metas[i] or {}), "index_version": version}))
        return [found[cid] for cid in reciprocal_rank_fusion([dense, lexical])[: self.k]]

    def _lexical_index(self, coll: Any, version: str
                       ) -> tuple[list[str], list[str], list[Any], BM25Index]:
        """The collection's texts and their BM25 index, rebuilt when the index version changes,
        or (while it is not stamped) when the size changes or ``lexical_refresh_s`` has passed."""
        with self._lexical_lock:
            stamped = recorded_version(coll) is not None
            count, now = coll.count(), time.monotonic()
            key = self._lexical_key
            stale = (self._lexical is None or key[2] != version
                     or (not stamped and (key[0] != count or now - key[1] > self.lexical_refresh_s)))
            if stale:
                got = coll.get(include=["documents", "metadatas"])
                texts = [t or "" for t in got["documents"]]
                self._lexical = (list(got["ids"]), texts, list(got["metadatas"]), BM25Index(texts))
                self._lexical_key = (count, now, version)
            return self._lexical
