"""The vector-database update job: keep a Chroma collection equal to its source documents.

The collection is its own bookkeeping. Chunk ids derive from content, so each
run compares the chunks the source yields now with the ids the collection
holds, embeds and upserts only the missing ones, then deletes the extra ones.
A crash at any point leaves a collection that the next run repairs: nothing
can be recorded as indexed without being in the store, because no record
exists apart from the store.

The index version is stamped on the collection's metadata when a run finishes,
and cleared before it writes, so a reader never takes a half-written collection
for the version it was before (see ``store.read_version``).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import IndexingError
from llmops.faults import fault_point
from llmops.indexing.chunking import Chunk, split_documents
from llmops.indexing.embedding import Embedder, load_embedder
from llmops.indexing.sources import SkippedDocument, SourceDocument, open_source
from llmops.indexing.store import index_version, indexed_chunks, open_collection, write_version

__all__ = ["IndexPlan", "IndexReport", "plan_update", "update_index"]


@dataclass
class IndexPlan:
    """What a run will do, before it does it."""

    to_add: list[Chunk]
    to_delete: list[str]
    added: int
    updated: int
    unchanged: int
    skipped: list[tuple[str, str]]
    documents: int
    target_ids: set[str] = field(repr=False)


@dataclass
class IndexReport:
    """What a run did. ``embedded`` counts chunks embedded; the rest count chunks."""

    source: str
    collection: str
    added: int
    updated: int
    deleted: int
    unchanged: int
    embedded: int
    documents: int
    skipped: list[tuple[str, str]]
    index_version: str
    seconds: float
    dry_run: bool = False
    run_id: str | None = None

    @property
    def chunks_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        verb = "would add" if self.dry_run else "added"
        return (
            f"{verb} {self.added}, updated {self.updated}, deleted {self.deleted}, "
            f"unchanged {self.unchanged} chunks; {len(self.skipped)} documents skipped; "
            f"index version {self.index_version}"
        )


def plan_update(
    docs: list[SourceDocument],
    skipped: list[SkippedDocument],
    existing: dict[str, str],
    settings: Settings,
    full: bool = False,
) -> IndexPlan:
    """Compare the chunks the source yields with the ids the collection holds."""
    chunks = split_documents(docs, settings.index)
    target = {c.id for c in chunks}
    kept_docs = {s.id for s in skipped if s.keep_previous}
    kept = {cid for cid, doc in existing.items() if doc in kept_docs}
    indexed_docs = set(existing.values())
    to_add = chunks if full else [c for c in chunks if c.id not in existing]
    new_ids = [c for c in chunks if c.id not in existing]
    updated = sum(1 for c in new_ids if c.doc_id in indexed_docs)
    return IndexPlan(
        to_add=to_add,
        to_delete=sorted(cid for cid in existing if cid not in target and cid not in kept),
        added=len(new_ids) - updated,
        updated=updated,
        unchanged=sum(1 for c in chunks if c.id in existing),
        skipped=[(s.id, s.reason) for s in skipped],
        documents=len(docs),
        target_ids=target | kept,
    )


def _batches(chunks: list[Chunk], size: int) -> list[list[Chunk]]:
    # Similar lengths in one batch waste no padding; sorting is stable, so
    # equal inputs always make equal batches.
    ordered = sorted(chunks, key=lambda c: len(c.text))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _embedded(batches: list[list[Chunk]], embedder: Embedder) -> Iterator[tuple[list[Chunk], Any]]:
    """Embed batch i+1 in a background thread while the caller writes batch i."""
    out: queue.Queue[Any] = queue.Queue(maxsize=2)

    def work() -> None:
        try:
            for batch in batches:
                out.put((batch, embedder.embed([c.text for c in batch])))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            out.put(exc)
        out.put(None)

    threading.Thread(target=work, name="embedder", daemon=True).start()
    while (item := out.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="chunk", desc="embedding", disable=not enabled or total == 0,
                file=sys.stderr, leave=False)


def update_index(
    settings: Settings | None = None,
    source: str | Path | None = None,
    collection: str | None = None,
    full: bool = False,
    dry_run: bool = False,
    progress: bool = True,
    embedder: Embedder | None = None,
    record: bool = True,
    echo: Callable[[str], None] | None = None,
    engine: str | None = None,
) -> IndexReport:
    """Bring the collection in line with the source; see the module docstring.

    Args:
        source: folder or Delta table (default ``index.source`` of llmops.yaml).
        collection: Chroma collection (default ``index.collection``).
        full: re-embed every chunk (still no downtime: upserts, then deletes).
        dry_run: report what would change; embed and write nothing.
        record: log an MLflow run and an ``index_runs`` row (not for dry runs).
        engine: ``local`` or ``ray`` (default ``index.engine``): where chunks are embedded.
    """
    settings = settings or load_settings()
    cfg = settings.index
    engine = engine or cfg.engine
    if engine not in ("local", "ray"):
        raise IndexingError(f"unknown engine '{engine}': 'local' or 'ray'")
    start = time.perf_counter()
    src_path = Path(source) if source else settings.root / cfg.source
    if not src_path.is_absolute():
        src_path = Path.cwd() / src_path
    name = collection or cfg.collection
    src = open_source(src_path, cfg)
    docs: list[SourceDocument] = []
    skipped: list[SkippedDocument] = []
    for item in src.read():
        (docs if isinstance(item, SourceDocument) else skipped).append(item)
    for s in skipped:
        if echo:
            echo(f"skipped {s.id}: {s.reason}")

    if dry_run:
        try:
            coll = open_collection(settings, name, create=False)
            existing = indexed_chunks(coll)
        except Exception:  # noqa: BLE001 - a collection that does not exist yet is empty
            existing = {}
    else:
        coll = open_collection(settings, name)
        existing = indexed_chunks(coll)
    plan = plan_update(docs, skipped, existing, settings, full=full)
    version = index_version(plan.target_ids)
    report = IndexReport(
        source=str(src_path), collection=name, added=plan.added, updated=plan.updated,
        deleted=len(plan.to_delete), unchanged=plan.unchanged, embedded=0,
        documents=plan.documents, skipped=plan.skipped, index_version=version,
        seconds=0.0, dry_run=dry_run,
    )
    if dry_run:
        report.seconds = time.perf_counter() - start
        return report

    if plan.to_add or plan.to_delete:
        write_version(coll, None)  # in flux: readers compute the version from the chunk ids
    bar = _progress(len(plan.to_add), progress)
    if engine == "ray":
        from llmops.indexing.distributed import embed_on_ray
        from llmops.indexing.store import open_client

        try:
            report.embedded = embed_on_ray(settings, plan.to_add, coll,
                                           open_client(settings).get_max_batch_size(), bar.update)
        finally:
            bar.close()
        embedder_name = f"{cfg.embedder} (ray)"
    else:
        embedder = embedder or load_embedder(cfg.embedder, cfg.batch_size)
        embedder_name = embedder.name
        _embed_here(plan, coll, embedder, cfg.batch_size, bar, report)
    for i in range(0, len(plan.to_delete), 1000):
        coll.delete(ids=plan.to_delete[i : i + 1000])
        fault_point("delete")
    write_version(coll, version)
    report.seconds = time.perf_counter() - start
    if record:
        report.run_id = _record(settings, report, embedder_name, src.name, full)
    return report


def _embed_here(plan: IndexPlan, coll: Any, embedder: Embedder, batch_size: int, bar: Any,
                report: IndexReport) -> None:
    """Embed in this process (batch i+1 while batch i is written) and upsert."""
    try:
        for batch, vectors in _embedded(_batches(plan.to_add, batch_size), embedder):
            coll.upsert(
                ids=[c.id for c in batch],
                embeddings=vectors,
                documents=[c.text for c in batch],
                metadatas=[c.metadata for c in batch],
            )
            report.embedded += len(batch)
            bar.update(len(batch))
            fault_point("upsert")
    finally:
        bar.close()


def _record(
    settings: Settings, report: IndexReport, embedder: str, source_name: str, full: bool
) -> str:
    """An MLflow run and an ``index_runs`` row for this run."""
    import mlflow

    from llmops.lakehouse import append_rows
    from llmops.stores import connect

    cfg = settings.index
    connect(settings)
    with mlflow.start_run(run_name=f"index-{report.collection}") as run:
        mlflow.set_tags({"llmops.kind": "index_update", "llmops.index_version": report.index_version,
                         "llmops.env": settings.env})
        mlflow.log_params({
            "source": source_name, "collection": report.collection,
            "splitter": f"{cfg.splitter}(chunk_size={cfg.chunk_size}, overlap={cfg.chunk_overlap})",
            "embedder": embedder, "full": full,
        })
        mlflow.log_metrics({
            "added": report.added, "updated": report.updated, "deleted": report.deleted,
            "unchanged": report.unchanged, "embedded": report.embedded,
            "skipped": len(report.skipped), "seconds": report.seconds,
            "chunks_per_s": report.chunks_per_s,
        })
        if report.skipped:
            mlflow.log_dict({"skipped": [list(s) for s in report.skipped]}, "skipped.json")
        mlflow.log_dict({k: v for k, v in asdict(report).items() if k != "skipped"}, "report.json")
    append_rows(settings.lakehouse, "index_runs", [{
        "run_id": run.info.run_id, "ts": datetime.now(timezone.utc), "source": report.source,
        "collection": report.collection, "added": report.added, "updated": report.updated,
        "deleted": report.deleted, "unchanged": report.unchanged,
        "index_version": report.index_version, "seconds": report.seconds,
    }])
    return run.info.run_id
