"""Models: the offline base models (SmolLM2-135M-Instruct, the default, converted from its GGUF
file, and the random tiny Llama for plumbing tests, both built without a model hub), and the
chat models that call a model (``local`` in process, or any OpenAI-compatible endpoint)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmops.models.catalog import (
    DEFAULT_MODEL,
    OFFLINE_MODELS,
    BuiltModel,
    build_model,
    ensure_model,
    list_models,
    resolve_model,
)
from llmops.models.config import TinyModelConfig
from llmops.models.smollm2 import SMOLLM2, build_smollm2, ensure_smollm2, smollm2_model_id
from llmops.models.tiny import TINY, build_tiny_model, ensure_tiny_model, tiny_model_id

if TYPE_CHECKING:
    from llmops.models.chat_models import LocalChatModel, build_chat_model

__all__ = [
    "DEFAULT_MODEL",
    "OFFLINE_MODELS",
    "SMOLLM2",
    "TINY",
    "BuiltModel",
    "LocalChatModel",
    "TinyModelConfig",
    "build_chat_model",
    "build_model",
    "build_smollm2",
    "build_tiny_model",
    "ensure_model",
    "ensure_smollm2",
    "ensure_tiny_model",
    "list_models",
    "resolve_model",
    "smollm2_model_id",
    "tiny_model_id",
]


def __getattr__(name: str) -> Any:
    # chat models pull in LangChain: load them on first use, so building a model stays cheap
    if name in ("LocalChatModel", "build_chat_model"):
        from llmops.models import chat_models

        return getattr(chat_models, name)
    raise AttributeError(f"module 'llmops.models' has no attribute {name!r}")
