"""Prompt templates: YAML files in git, versions in MLflow's prompt registry."""

from __future__ import annotations

from llmops.prompts.config import ChatMessage, PromptFile
from llmops.prompts.langchain import load, to_langchain
from llmops.prompts.registry import (
    PromptInfo,
    SyncReport,
    diff_versions,
    get_version,
    list_prompts,
    register_version,
    set_alias,
    sync_prompts,
    to_template,
)
from llmops.prompts.templates import PromptTemplate, read_prompt_dir, read_prompt_file
from llmops.prompts.tracking import PromptTrial, compare_prompts, try_prompt

__all__ = [
    "ChatMessage",
    "PromptFile",
    "PromptInfo",
    "PromptTemplate",
    "PromptTrial",
    "SyncReport",
    "compare_prompts",
    "diff_versions",
    "get_version",
    "list_prompts",
    "load",
    "read_prompt_dir",
    "read_prompt_file",
    "register_version",
    "set_alias",
    "sync_prompts",
    "to_langchain",
    "to_template",
    "try_prompt",
]
