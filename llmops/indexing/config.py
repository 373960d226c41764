"""Settings of the vector-database update job (``index:`` in ``llmops.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["IndexConfig"]


class IndexConfig(BaseModel):
    """Where the documents come from, how they are split and embedded, where they go."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        "docs", description="A folder of Markdown/text files, or a Delta table (id + text columns)."
    )
    collection: str = Field(
        "docs", pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{1,510}[A-Za-z0-9]$|^[A-Za-z0-9]{3}$",
        description="Chroma collection name (3-512 characters).",
    )
    splitter: Literal["markdown", "recursive"] = Field(
        "markdown", description="LangChain text splitter: Markdown-aware or plain recursive."
    )
    chunk_size: int = Field(600, ge=50, le=20000, description="Most characters per chunk.")
    chunk_overlap: int = Field(80, ge=0, description="Characters shared by neighbouring chunks.")
    extensions: list[str] = Field(
        default_factory=lambda: [".md", ".markdown", ".txt", ".rst"],
        description="File extensions read from a folder source.",
    )
    max_document_bytes: int = Field(
        2_000_000, ge=1, description="Documents larger than this are skipped with a reason."
    )
    embedder: str = Field(
        "minilm",
        description="'minilm' (the offline all-MiniLM-L6-v2), a sentence-transformers folder or id.",
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Chunks embedded and written per batch.")
    id_column: str = Field("id", description="Delta source: the document id column.")
    text_column: str = Field("text", description="Delta source: the document text column.")
    top_k: int = Field(3, ge=1, le=100, description="Chunks a chain retrieves per question.")
    search: Literal["dense", "hybrid"] = Field(
        "hybrid", description="How chains search: 'hybrid' fuses embedding neighbours with BM25 "
                              "(exact words: commands, flags, names); 'dense' uses embeddings only.")
