"""Retrieve the top-k chunks for a question from a collection (a LangChain retriever).

``search="hybrid"`` (the default) fuses the embedding neighbours with a BM25
ranking of the same collection (see ``lexical.py``); ``"dense"`` uses the
embeddings alone.
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
    _coll: Any = PrivateAttr(default=None)
    _embedder: Any = PrivateAttr(default=None)
    _lexical: Any = PrivateAttr(default=None)
    _lexical_key: Any = PrivateAttr(default=None)
    _lexical_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def _open(self) -> tuple[Any, Any]:
        # chain.batch() runs rows in threads; chromadb's client registry is not
        # safe to populate from two threads at once.
        with _open_lock:
            return self._open_locked()

    def _open_locked(self) -> tuple[Any, Any]:
        if self._coll is None:
            import chromadb
            from chromadb.config import Settings as ChromaClientSettings

            from llmops.indexing.embedding import load_embedder

            opts = ChromaClientSettings(anonymized_telemetry=False)
            client = (
                chromadb.HttpClient(host=self.chroma.host, port=self.chroma.port, settings=opts)
                if self.chroma.host
                else chromadb.PersistentClient(path=str(self.chroma.path), settings=opts)
            )
            try:
                self._coll = client.get_collection(self.collection, embedding_function=None)
            except Exception as exc:  # noqa: BLE001 - chromadb's NotFoundError varies by version
                raise IndexingError(
                    f"collection '{self.collection}' does not exist: run 'llmops index update'"
                ) from exc
            self._embedder = load_embedder(self.embedder)
        return self._coll, self._embedder

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        coll, embedder = self._open()
        n = self.k if self.search == "dense" else max(self.k, self.candidates)
        result = coll.query(
            query_embeddings=embedder.embed([query]), n_results=n,
            include=["documents", "metadatas", "distances"],
        )
        found: dict[str, Document] = {}
        for cid, text, meta, dist in zip(result["ids"][0], result["documents"][0],
                                         result["metadatas"][0], result["distances"][0],
                                         strict=True):
            found[cid] = Document(page_content=text, metadata={**(meta or {}), "distance": dist})
        dense = list(found)
        if self.search == "dense":
            return [found[cid] for cid in dense[: self.k]]
        ids, texts, metas, bm25 = self._lexical_index(coll)
        top = bm25.top(query, n)
        lexical = [ids[i] for i in top]
        for i in top:
            found.setdefault(ids[i], Document(page_content=texts[i], metadata=dict(metas[i] or {})))
        return [found[cid] for cid in reciprocal_rank_fusion([dense, lexical])[: self.k]]

    def _lexical_index(self, coll: Any) -> tuple[list[str], list[str], list[Any], BM25Index]:
        """The collection's texts and their BM25 index, rebuilt when its size changes or
        ``lexical_refresh_s`` has passed."""
        with self._lexical_lock:
            count, now = coll.count(), time.monotonic()
            key = self._lexical_key
            if self._lexical is None or key[0] != count or now - key[1] > self.lexical_refresh_s:
                got = coll.get(include=["documents", "metadatas"])
                texts = [t or "" for t in got["documents"]]
                self._lexical = (list(got["ids"]), texts, list(got["metadatas"]), BM25Index(texts))
                self._lexical_key = (count, now)
            return self._lexical
