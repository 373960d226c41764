"""Offline models: SmolLM2-135M-Instruct (the default, converted from its GGUF file) and the
random tiny Llama for plumbing tests, both built without a model hub."""

from __future__ import annotations

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

__all__ = [
    "DEFAULT_MODEL",
    "OFFLINE_MODELS",
    "SMOLLM2",
    "TINY",
    "BuiltModel",
    "TinyModelConfig",
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
