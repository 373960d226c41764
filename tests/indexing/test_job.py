from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from llmops.errors import IndexSourceError
from llmops.indexing import current_index_version, update_index
from llmops.indexing import job as job_module
from llmops.indexing.embedding import load_embedder
from llmops.indexing.store import open_collection
from llmops.lakehouse import read_table
from tests.indexing.conftest import doc_text, snapshot


class CountingEmbedder:
    """The real MiniLM embedder, counting what it is asked to embed."""

    def __init__(self) -> None:
        self.inner = load_embedder("minilm")
        self.name = self.inner.name
        self.texts = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self.inner.embed(texts)


class WriteSpy:
    """A real collection that counts the writes made to it."""

    def __init__(self, coll) -> None:
        self.coll, self.writes = coll, 0

    def upsert(self, **kw):
        self.writes += 1
        return self.coll.upsert(**kw)

    def delete(self, **kw):
        self.writes += 1
        return self.coll.delete(**kw)

    def __getattr__(self, name):
        return getattr(self.coll, name)


@pytest.fixture
def spy(monkeypatch):
    spies = []

    def opener(settings, name, create=True):
        spies.append(WriteSpy(open_collection(settings, name, create)))
        return spies[-1]

    monkeypatch.setattr(job_module, "open_collection", opener)
    return spies


def test_build_then_incremental_then_noop(index_settings, corpus: Path, spy) -> None:
    emb = CountingEmbedder()
    first = update_index(index_settings, embedder=emb, progress=False)
    total = first.added
    assert total > 30 and first.updated == first.deleted == first.unchanged == 0
    assert emb.texts == total == first.embedded
    assert len(snapshot(index_settings)) == total

    # change one document, delete one, add one
    (corpus / "prompts.md").write_text(doc_text("prompts", revision=1))
    (corpus / "chains.md").unlink()
    (corpus / "security.md").write_text(doc_text("security"))
    emb.texts = 0
    second = update_index(index_settings, embedder=emb, progress=False)
    assert second.updated == 1  # only the first chunk of prompts.md holds the revision
    assert second.added == len([c for c in snapshot(index_settings).values()
                                if c[1]["doc_id"] == "security.md"])
    assert emb.texts == second.added + second.updated
    assert second.deleted >= 1 + 1  # the old chunk of prompts.md and every chunk of chains.md
    after = snapshot(index_settings)
    assert not [c for c in after.values() if c[1]["doc_id"] == "chains.md"]
    assert len(after) == second.unchanged + second.added + second.updated

    emb.texts = 0
    third = update_index(index_settings, embedder=emb, progress=False)
    assert (third.added, third.updated, third.deleted, third.embedded) == (0, 0, 0, 0)
    assert third.unchanged == len(after)
    assert emb.texts == 0 and spy[-1].writes == 0
    assert third.index_version == second.index_version != first.index_version
    assert current_index_version(index_settings, "docs")[0] == third.index_version


def test_equal_contents_give_equal_versions(index_settings, corpus: Path, tmp_path: Path) -> None:
    v1 = update_index(index_settings, progress=False, record=False).index_version
    other = update_index(index_settings, collection="copy", progress=False, record=False)
    assert other.index_version == v1
    (corpus / "extra.md").write_text(doc_text("extra"))
    v2 = update_index(index_settings, progress=False, record=False).index_version
    (corpus / "extra.md").unlink()
    v3 = update_index(index_settings, progress=False, record=False).index_version
    assert v2 != v1 and v3 == v1


def test_dry_run_embeds_and_writes_nothing(index_settings, corpus: Path, spy) -> None:
    emb = CountingEmbedder()
    plan = update_index(index_settings, dry_run=True, embedder=emb, progress=False)
    assert plan.dry_run and plan.added > 0 and emb.texts == 0
    assert spy == [] or spy[-1].writes == 0
    assert not (index_settings.lakehouse / "index_runs").exists()
    update_index(index_settings, progress=False)
    (corpus / "lineage.md").unlink()
    before = snapshot(index_settings)
    plan = update_index(index_settings, dry_run=True, embedder=emb, progress=False)
    assert plan.deleted > 0 and snapshot(index_settings) == before and emb.texts == 0


def test_full_rebuild_re_embeds_everything(index_settings) -> None:
    update_index(index_settings, progress=False, record=False)
    before = snapshot(index_settings)
    emb = CountingEmbedder()
    full = update_index(index_settings, full=True, embedder=emb, progress=False, record=False)
    assert emb.texts == len(before) == full.embedded
    assert full.unchanged == len(before) and full.added == full.deleted == 0
    assert set(snapshot(index_settings)) == set(before)


def test_run_is_recorded_in_mlflow_and_delta(index_settings) -> None:
    report = update_index(index_settings, progress=False)
    run = mlflow.get_run(report.run_id)
    assert run.data.params["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert run.data.params["splitter"].startswith("markdown(chunk_size=300")
    assert run.data.metrics["added"] == report.added
    assert run.data.metrics["chunks_per_s"] > 0
    assert run.data.tags["llmops.index_version"] == report.index_version
    update_index(index_settings, progress=False)
    rows = read_table(index_settings.lakehouse, "index_runs").sort_values("ts")
    assert list(rows["added"]) == [report.added, 0]
    assert list(rows["unchanged"]) == [0, report.added]
    assert rows["index_version"].nunique() == 1
    assert rows["run_id"].iloc[0] == report.run_id


def test_bad_documents_never_corrupt_the_collection(index_settings, corpus: Path) -> None:
    update_index(index_settings, progress=False, record=False)
    before = snapshot(index_settings)
    kept_ids = {cid for cid, c in before.items() if c[1]["doc_id"] == "feedback.md"}
    gone_ids = {cid for cid, c in before.items() if c[1]["doc_id"] == "adapters.md"}
    (corpus / "feedback.md").write_bytes(b"\x00\x01binary now")        # unusable: keep old chunks
    (corpus / "adapters.md").write_text("")                             # emptied: drop its chunks
    (corpus / "huge.md").write_text("y " * 20000)                       # over the size limit
    (corpus / "latin.md").write_bytes("\xe9t\xe9".encode("latin-1"))    # not UTF-8
    report = update_index(index_settings, progress=False, record=False)
    reasons = dict(report.skipped)
    assert reasons["feedback.md"] == "binary file" and reasons["adapters.md"] == "empty"
    assert reasons["huge.md"].startswith("larger") and reasons["latin.md"].startswith("not UTF-8")
    after = snapshot(index_settings)
    assert kept_ids <= set(after) and not gone_ids & set(after)
    assert set(after) == set(before) - gone_ids
    assert report.deleted == len(gone_ids) and report.added == report.updated == 0


def test_missing_source_changes_nothing(index_settings, tmp_path: Path) -> None:
    update_index(index_settings, progress=False, record=False)
    before = snapshot(index_settings)
    with pytest.raises(IndexSourceError, match="does not exist"):
        update_index(index_settings, source=tmp_path / "nowhere", progress=False)
    assert snapshot(index_settings) == before


def test_delta_table_source_end_to_end(index_settings, tmp_path: Path) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    table = tmp_path / "articles"
    rows = {"id": ["a1", "a2", "a3"],
            "text": [doc_text("prompts"), doc_text("chains"), doc_text("indexes")]}
    write_deltalake(str(table), pa.table(rows))
    first = update_index(index_settings, source=table, collection="articles", progress=False,
                         record=False)
    assert first.documents == 3 and first.added > 3
    held = snapshot(index_settings, "articles")
    assert {m["doc_id"] for _, m, _ in held.values()} == {"a1", "a2", "a3"}
    rows["text"][1] = doc_text("chains", revision=5)
    write_deltalake(str(table), pa.table({"id": rows["id"][:2], "text": rows["text"][:2]}),
                    mode="overwrite")
    second = update_index(index_settings, source=table, collection="articles", progress=False,
                          record=False)
    assert second.updated == 1 and second.added == 0
    after = snapshot(index_settings, "articles")
    assert {m["doc_id"] for _, m, _ in after.values()} == {"a1", "a2"}
    assert second.deleted == 1 + sum(1 for _, m, _ in held.values() if m["doc_id"] == "a3")
