"""Retrieve the top-k chunks for a question from a collection (a LangChain retriever)."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from llmops.config import ChromaSettings
from llmops.errors import IndexingError

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
    _coll: Any = PrivateAttr(default=None)
    _embedder: Any = PrivateAttr(default=None)

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
        result = coll.query(
            query_embeddings=embedder.embed([query]), n_results=self.k,
            include=["documents", "metadatas", "distances"],
        )
        docs = []
        for text, meta, dist in zip(
            result["documents"][0], result["metadatas"][0], result["distances"][0], strict=True
        ):
            docs.append(Document(page_content=text, metadata={**(meta or {}), "distance": dist}))
        return docs
