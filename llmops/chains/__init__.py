"""Chains: LangChain Runnables built from registered prompts, packaged as MLflow pyfunc models."""

from __future__ import annotations

from llmops.chains.building import (
    chain_chat_model,
    chain_config,
    chain_prompt,
    chain_retriever,
    chain_versions,
    resolve_prompt,
    resolve_retriever,
)
from llmops.chains.config import ChainConfig, ResolvedPrompt, RetrieverConfig
from llmops.chains.packaging import ChainModel, LoggedChain, log_chain
from llmops.chains.qa import build_qa_chain, format_context
from llmops.chains.registry import ask, invoke, load, load_at_endpoint
from llmops.models.chat_models import LocalChatModel, build_chat_model
from llmops.registry import model_version, promote

__all__ = [
    "ChainConfig",
    "ChainModel",
    "LocalChatModel",
    "LoggedChain",
    "ResolvedPrompt",
    "ask",
    "build_chat_model",
    "build_qa_chain",
    "chain_chat_model",
    "chain_config",
    "chain_prompt",
    "chain_retriever",
    "chain_versions",
    "format_context",
    "invoke",
    "load",
    "load_at_endpoint",
    "log_chain",
    "model_version",
    "promote",
    "resolve_prompt",
    "resolve_retriever",
    "RetrieverConfig",
]
