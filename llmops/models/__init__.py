"""Offline models: the tiny Llama built without a model hub."""

from __future__ import annotations

from llmops.models.config import TinyModelConfig
from llmops.models.tiny import TINY, build_tiny_model, ensure_tiny_model, tiny_model_id

__all__ = ["TINY", "TinyModelConfig", "build_tiny_model", "ensure_tiny_model", "tiny_model_id"]
