"""A chain's configuration: what a chain file declares, and what logging resolves it to."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops.config import ChatModelSettings, ChromaSettings

__all__ = ["ChainConfig", "ResolvedPrompt", "RetrieverConfig"]


class RetrieverConfig(BaseModel):
    """Retrieval from the vector index; logging pins where it is and which version it held."""

    model_config = ConfigDict(extra="forbid")

    collection: str | None = Field(None, description="Collection (default: index.collection).")
    k: int | None = Field(None, ge=1, le=100, description="Chunks per question (default: index.top_k).")
    search: Literal["dense", "hybrid"] | None = Field(
        None, description="'hybrid' (embeddings + BM25) or 'dense' (default: index.search).")
    chroma: ChromaSettings | None = Field(None, description="Where the collection is; set at log time.")
    embedder: str | None = Field(None, description="Embedder of the collection; set at log time.")
    index_version: str | None = Field(None, description="Index version at log time.")


class ResolvedPrompt(BaseModel):
    """A prompt pinned to one registry version, with its template, so a logged chain is self-contained."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    uri: str = Field(description="prompts:/NAME/VERSION")
    template: str | list[dict[str, str]]
    model_parameters: dict[str, Any] = Field(default_factory=dict)


class ChainConfig(BaseModel):
    """What a chain needs to be built.

    In a chain file (development) ``prompt`` is a reference such as
    ``qa@production`` and ``chat_model`` may be left to the environment. Logging
    resolves both: ``resolved_prompt`` pins the exact version and
    ``chat_model`` is written out in full.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="Prompt reference: NAME, NAME@ALIAS or NAME/VERSION.")
    chat_model: ChatModelSettings | None = Field(
        None, description="Chat model settings; None takes the environment's."
    )
    model_path: str | None = Field(
        None, description="Resolved local model folder (kind 'local'), set at log time."
    )
    resolved_prompt: ResolvedPrompt | None = Field(None, description="Set at log time.")
    retriever: RetrieverConfig | None = Field(None, description="Retrieval; None for no retrieval.")
    description: str = Field("", description="What the chain does; the model version's description.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Chain-specific settings.")
