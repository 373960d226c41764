"""The index update job against LangChain's indexing API, side by side on one corpus.

Same corpus, same splitter (LangChain's MarkdownTextSplitter), same embedder
(the offline all-MiniLM-L6-v2, batches of 64), same vector database (embedded
Chroma). LangChain's side is ``langchain_classic.indexes.index`` with a
``SQLRecordManager`` and ``langchain_chroma.Chroma``.

It measures, in one run:
  1. the floor: embed every chunk in batches of 64 and add them to Chroma directly;
  2. a full build: ours, and LangChain's;
  3. after 1% of the documents changed and 1% were deleted, an update: ours,
     LangChain's with cleanup="incremental", and with cleanup="full" (both
     from copies of the same LangChain store);
and prints wall times, ratios, what each side embedded, wrote and deleted
against the minimum (the chunks that really changed), and what each left
behind (orphan chunks of deleted documents).

Usage: python benchmarks/index_update.py [--chunks 10000]
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from _harness import parser, timed

WORDS = (
    "prompt chain index vector model adapter gateway feedback version alias registry run "
    "metric table delta chunk embed update source document collection query answer user "
    "rating correction eval gate promote staging production latency token stream request "
    "lineage commit hash store server client batch queue worker engine lora rank dataset"
).split()


class Counting:
    """Counts the texts an embedder is asked to embed."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.texts = inner, inner.name, 0

    def embed(self, texts):
        self.texts += len(texts)
        return self.inner.embed(texts)


def make_doc(rng: random.Random, doc_no: int, revision: int = 0) -> str:
    sections = []
    for s in range(rng.randint(3, 6)):
        paras = []
        for _ in range(rng.randint(1, 3)):
            n = rng.randint(25, 60)
            paras.append(" ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + ".")
        sections.append(f"## Section {s} of doc {doc_no} (r{revision})\n\n" + "\n\n".join(paras))
    return f"# Document {doc_no}\n\n" + "\n\n".join(sections) + "\n"


def build_corpus(folder: Path, target_chunks: int, splitter) -> int:
    rng = random.Random(1234)
    folder.mkdir(parents=True)
    chunks = doc_no = 0
    while chunks < target_chunks:
        text = make_doc(rng, doc_no)
        (folder / f"doc{doc_no:05d}.md").write_text(text)
        chunks += len(splitter.split_text(text))
        doc_no += 1
    return doc_no


def lc_docs(folder: Path, splitter):
    from langchain_core.documents import Document

    docs = []
    for path in sorted(folder.glob("*.md")):
        for text in splitter.split_text(path.read_text()):
            docs.append(Document(page_content=text, metadata={"source": path.name}))
    return docs


def chunk_set(folder: Path, splitter) -> set[tuple[str, str]]:
    return {(d.metadata["source"], d.page_content) for d in lc_docs(folder, splitter)}


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--chunks", type=int, default=10_000, help="corpus size in chunks")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)

    import chromadb
    from chromadb.api.client import SharedSystemClient
    from chromadb.config import Settings as ChromaSettings
    from langchain_chroma import Chroma
    from langchain_classic.indexes import SQLRecordManager, index

    from llmops.config import IndexConfig, load_settings
    from llmops.indexing import update_index
    from llmops.indexing.chunking import make_splitter
    from llmops.indexing.embedding import as_langchain_embeddings, load_embedder
    from llmops.indexing.store import indexed_chunks, open_collection

    work = Path(tempfile.mkdtemp(prefix="index-bench-"))
    cfg = IndexConfig(chunk_size=400, chunk_overlap=40, batch_size=64)
    splitter = make_splitter(cfg)
    corpus = work / "corpus"
    n_docs = build_corpus(corpus, args.chunks, splitter)
    n_chunks = len(lc_docs(corpus, splitter))
    print(f"corpus: {n_docs} documents, {n_chunks} chunks (~{cfg.chunk_size} characters)", flush=True)

    embedder = load_embedder("minilm")
    embedder.embed(["warm up the model"])
    opts = ChromaSettings(anonymized_telemetry=False)

    # 1. the floor
    def floor() -> None:
        client = chromadb.PersistentClient(path=str(work / "floor"), settings=opts)
        coll = client.create_collection("floor", metadata={"hnsw:space": "cosine"},
                                        embedding_function=None)
        docs = lc_docs(corpus, splitter)
        for i in range(0, len(docs), 64):
            batch = docs[i : i + 64]
            coll.add(ids=[f"c{i + j}" for j in range(len(batch))],
                     embeddings=embedder.embed([d.page_content for d in batch]),
                     documents=[d.page_content for d in batch],
                     metadatas=[d.metadata for d in batch])

    _, t_floor = timed(floor)
    print(f"floor (embed in batches of 64 + add): {t_floor:.1f} s", flush=True)

    # 2. full builds
    root = work / "ours"
    root.mkdir()
    (root / "llmops.yaml").write_text(
        f"project: bench\nindex:\n  source: {corpus}\n  chunk_size: {cfg.chunk_size}\n"
        f"  chunk_overlap: {cfg.chunk_overlap}\n  batch_size: 64\n"
    )
    settings = load_settings(root=root)
    ours_emb = Counting(embedder)
    ours_full, t_ours_full = timed(
        lambda: update_index(settings, embedder=ours_emb, progress=False, record=False))
    print(f"ours full build: {t_ours_full:.1f} s", flush=True)

    lc_emb = Counting(embedder)
    lc_embeddings = as_langchain_embeddings(lc_emb)

    def lc_store(name: str):
        client = chromadb.PersistentClient(path=str(work / name / "chroma"), settings=opts)
        vs = Chroma(collection_name="langchain", client=client, embedding_function=lc_embeddings,
                    collection_metadata={"hnsw:space": "cosine"})
        rm = SQLRecordManager("langchain", db_url=f"sqlite:///{work / name / 'records.db'}")
        rm.create_schema()
        return vs, rm

    (work / "lcA").mkdir()
    vs, rm = lc_store("lcA")
    lc_full, t_lc_full = timed(lambda: index(lc_docs(corpus, splitter), rm, vs, cleanup="full",
                                             source_id_key="source", batch_size=64))
    lc_full_embedded = lc_emb.texts
    print(f"LangChain full build: {t_lc_full:.1f} s ({lc_full})", flush=True)
    SharedSystemClient.clear_system_cache()
    shutil.copytree(work / "lcA", work / "lcB")

    # 3. change 1% of the documents, delete 1%
    rng = random.Random(99)
    before = chunk_set(corpus, splitter)
    files = sorted(corpus.glob("*.md"))
    picked = rng.sample(files, max(2, len(files) // 50))
    changed, deleted = picked[: len(picked) // 2], picked[len(picked) // 2 :]
    for path in changed:
        text = path.read_text()
        paras = text.split("\n\n")
        k = rng.randrange(1, len(paras))
        paras[k] = paras[k] + " Revised with a new closing sentence."
        path.write_text("\n\n".join(paras))
    for path in deleted:
        path.unlink()
    after = chunk_set(corpus, splitter)
    minimum_embed = len(after - before)
    minimum_delete = len(before - after)
    deleted_names = {p.name for p in deleted}
    print(f"changed {len(changed)} and deleted {len(deleted)} documents: minimum "
          f"{minimum_embed} chunks to embed, {minimum_delete} to delete", flush=True)

    ours_emb.texts = 0
    ours_inc, t_ours_inc = timed(
        lambda: update_index(settings, embedder=ours_emb, progress=False, record=False))
    ours_left = sum(1 for d in indexed_chunks(open_collection(settings, "docs")).values()
                    if d in deleted_names)

    results = {}
    for name, cleanup in (("lcA", "incremental"), ("lcB", "full")):
        SharedSystemClient.clear_system_cache()
        vs, rm = lc_store(name)
        lc_emb.texts = 0
        res, t = timed(lambda vs=vs, rm=rm, cleanup=cleanup: index(
            lc_docs(corpus, splitter), rm, vs, cleanup=cleanup, source_id_key="source",
            batch_size=64))
        held = vs._collection.get(include=["metadatas"])
        orphans = sum(1 for m in held["metadatas"] if (m or {}).get("source") in deleted_names)
        results[cleanup] = (res, t, lc_emb.texts, orphans)

    print()
    print("FULL BUILD")
    print(f"  floor                      {t_floor:8.1f} s   1.00x floor   embedded {n_chunks}")
    print(f"  ours                       {t_ours_full:8.1f} s   {t_ours_full / t_floor:.2f}x floor"
          f"   embedded {ours_full.embedded}")
    print(f"  LangChain index()          {t_lc_full:8.1f} s   {t_lc_full / t_floor:.2f}x floor"
          f"   embedded {lc_full_embedded}")
    print(f"  ours / LangChain           {t_ours_full / t_lc_full:.2f}x")
    print()
    print(f"UPDATE (1% changed, 1% deleted; minimum: embed {minimum_embed}, delete {minimum_delete})")
    print(f"  {'':26} {'time':>8}   {'embedded':>8} {'written':>8} {'deleted':>8} {'orphans left':>12}")
    print(f"  {'ours':26} {t_ours_inc:7.1f}s   {ours_emb.texts:>8} "
          f"{ours_inc.added + ours_inc.updated:>8} {ours_inc.deleted:>8} {ours_left:>12}")
    for cleanup, (res, t, emb, orphans) in results.items():
        written = res["num_added"] + res["num_updated"]
        print(f"  {'LangChain ' + cleanup:26} {t:7.1f}s   {emb:>8} {written:>8} "
              f"{res['num_deleted']:>8} {orphans:>12}")
    t_full_cleanup = results["full"][1]
    print(f"  ours / LangChain full      {t_ours_inc / t_full_cleanup:.2f}x   (target <= 0.5x)")
    print(f"  ours / LangChain incremental {t_ours_inc / results['incremental'][1]:.2f}x")
    ok_min = ours_emb.texts == minimum_embed and ours_inc.deleted == minimum_delete and ours_left == 0
    print(f"  ours embedded exactly the minimum and removed deleted documents: {ok_min}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
