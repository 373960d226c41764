"""A small corpus and an index config that makes many batches out of it."""

from __future__ import annotations

from pathlib import Path

import pytest

TOPICS = [
    "prompts", "chains", "aliases", "environments", "indexes", "embeddings", "gateways",
    "feedback", "evaluation", "adapters", "monitoring", "lineage",
]


def doc_text(topic: str, revision: int = 0) -> str:
    paras = [
        f"# About {topic}\n\nThis page explains {topic} in llmops, revision {revision}.",
        f"## Why {topic} matter\n\n" + " ".join(
            f"Sentence {i} says how {topic} keep an LLM application versioned and traceable."
            for i in range(6)
        ),
        f"## How to use {topic}\n\n" + " ".join(
            f"Step {i}: run the {topic} command and read its report." for i in range(5)
        ),
    ]
    return "\n\n".join(paras) + "\n"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for topic in TOPICS:
        (folder / f"{topic}.md").write_text(doc_text(topic))
    return folder


def _index_settings(project: Path, corpus: Path, embedder: str):
    from llmops.config import load_settings

    with (project / "llmops.yaml").open("a") as f:
        f.write(f"index:\n  source: {corpus}\n  chunk_size: 300\n  chunk_overlap: 40\n"
                f"  batch_size: 8\n  max_document_bytes: 20000\n  embedder: {embedder}\n")
    return load_settings(root=project)


@pytest.fixture
def index_settings(project: Path, corpus: Path):
    """The project's index on the real MiniLM embedder."""
    return _index_settings(project, corpus, "minilm")


@pytest.fixture
def hash_index_settings(project: Path, corpus: Path):
    """The project's index on the hash embedder (no model, no torch): for tests of the
    bookkeeping (which chunks are written, deleted, re-embedded after a crash), which holds
    whatever the vectors mean; a job in a subprocess then starts in about a second."""
    return _index_settings(project, corpus, "hash")


def snapshot(settings, name: str = "docs") -> dict:
    """Everything a collection holds, by chunk id.

    Embedded Chroma caches a store's state per process; another process (the
    job under test) has written to it, so the cache is dropped first.
    """
    from chromadb.api.client import SharedSystemClient

    from llmops.indexing.store import open_collection

    SharedSystemClient.clear_system_cache()
    coll = open_collection(settings, name, create=False)
    data = coll.get(include=["embeddings", "documents", "metadatas"])
    return {
        cid: (doc, meta, list(map(float, emb)))
        for cid, doc, meta, emb in zip(
            data["ids"], data["documents"], data["metadatas"], data["embeddings"], strict=True
        )
    }
