"""The update job's embedding on Ray actors (``index.engine: ray``), on the batch path.

The plan (which chunks to add, which to delete) stays on the driver: it needs every chunk
id, which is cheap. The chunks to add are embedded by Ray actors, each with the embedder
loaded once, and the driver upserts each batch of vectors as it arrives, in writes no larger
than Chroma's ``max_batch_size``. The guarantees are the local path's: the collection is the
bookkeeping, so a crash anywhere (the driver, or a Ray worker mid-batch: Ray retries its
batch on a new actor) is repaired by the next run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from llmops.batch import BatchWorker, run_batch
from llmops.config import Settings
from llmops.errors import IndexingError
from llmops.faults import fault_point
from llmops.indexing.chunking import Chunk

__all__ = ["EmbedWorker", "embed_on_ray"]


class EmbedWorker(BatchWorker):
    """The embedder, loaded once per actor; a batch of texts in, their vectors out."""

    output_schema: ClassVar[dict[str, str]] = {"embedding": "float32_list"}

    def __init__(self, embedder: str, batch_size: int) -> None:
        from llmops.indexing.embedding import load_embedder

        self.embedder = load_embedder(embedder, batch_size)

    def process(self, rows: Any) -> Any:
        import pandas as pd

        vectors = self.embedder.embed(rows["text"].tolist())
        return pd.DataFrame({"embedding": [list(map(float, v)) for v in vectors]})


def embed_on_ray(settings: Settings, chunks: list[Chunk], collection: Any, max_batch: int,
                 written: Callable[[int], None]) -> int:
    """Embed ``chunks`` on Ray and upsert them into ``collection``; returns how many."""
    import pandas as pd

    if not chunks:
        return 0
    by_id = {c.id: c for c in chunks}
    # similar lengths in one batch waste no padding (as on the local path)
    ordered = sorted(chunks, key=lambda c: len(c.text))
    frame = pd.DataFrame({"id": [c.id for c in ordered], "text": [c.text for c in ordered]})
    cfg = settings.index
    done = 0

    def upsert(part: Any) -> None:
        nonlocal done
        failed = part[part["error"].notna()]
        if len(failed):
            raise IndexingError(f"embedding failed for {len(failed)} chunks (first: "
                                f"{failed['id'].iloc[0]}: {failed['error'].iloc[0]}); nothing "
                                "else was written for them: fix the cause and run again")
        for start in range(0, len(part), max_batch):
            rows = part.iloc[start:start + max_batch]
            ids = rows["id"].tolist()
            collection.upsert(ids=ids, embeddings=[list(v) for v in rows["embedding"]],
                              documents=[by_id[i].text for i in ids],
                              metadatas=[by_id[i].metadata for i in ids])
            done += len(ids)
            written(len(ids))
            fault_point("upsert")

    run_batch("index embed", frame, EmbedWorker, settings, required=["text"],
              worker_kwargs={"embedder": cfg.embedder, "batch_size": cfg.batch_size},
              batch_size=cfg.batch_size, commit_rows=cfg.batch_size, max_error_share=0.0,
              progress=False, on_commit=upsert, mlflow_run=False, keep_frame=False)
    return done
