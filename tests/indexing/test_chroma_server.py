"""The same job against a Chroma server (HttpClient) instead of embedded Chroma."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.config import load_settings
from llmops.errors import StoreUnavailableError
from llmops.indexing import IndexRetriever, update_index
from tests.conftest import free_port
from tests.indexing.conftest import doc_text, snapshot


def server_settings(project: Path, host: str, port: int, collection: str):
    text = (project / "llmops.yaml").read_text()
    text = text.replace("  dev: {}", f"  dev:\n    chroma: {{host: {host}, port: {port}}}")
    text += f"  collection: {collection}\n"
    (project / "llmops.yaml").write_text(text)
    return load_settings(root=project)


def test_server_mode_same_code_path(index_settings, project: Path, corpus: Path,
                                    chroma_server, request) -> None:
    host, port = chroma_server
    collection = f"srv-{request.node.name[-20:].replace('_', '-')}"
    settings = server_settings(project, host, port, collection)
    assert settings.chroma.host == host
    first = update_index(settings, progress=False, record=False)
    assert first.added > 30
    assert not (project / ".llmops" / "dev" / "chroma").exists()  # nothing embedded on disk
    (corpus / "gateways.md").write_text(doc_text("gateways", revision=2))
    second = update_index(settings, progress=False, record=False)
    assert (second.updated, second.added, second.deleted) == (1, 0, 1)
    third = update_index(settings, progress=False, record=False)
    assert third.embedded == 0 and third.index_version == second.index_version
    held = snapshot(settings, collection)
    assert len(held) == third.unchanged
    retriever = IndexRetriever(collection=collection, chroma=settings.chroma, k=2)
    docs = retriever.invoke("How do gateways keep an application traceable?")
    assert len(docs) == 2 and docs[0].metadata["doc_id"] == "gateways.md"


def test_unreachable_server_is_a_clear_error(index_settings, project: Path) -> None:
    settings = server_settings(project, "127.0.0.1", free_port(), "docs")
    with pytest.raises(StoreUnavailableError, match="cannot reach the Chroma server 127.0.0.1"):
        update_index(settings, progress=False, record=False)
