"""Registered prompt versions as LangChain prompt templates."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from llmops.config import Settings
from llmops.prompts.registry import get_version, to_template
from llmops.prompts.templates import PromptTemplate

if TYPE_CHECKING:
    from langchain_core.prompts import BasePromptTemplate

__all__ = ["load", "to_langchain"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _to_fstring(text: str) -> str:
    """``{{var}}`` to LangChain's ``{var}``; literal braces are escaped, not read as variables."""
    parts = []
    last = 0
    for match in _PLACEHOLDER.finditer(text):
        parts.append(text[last : match.start()].replace("{", "{{").replace("}", "}}"))
        parts.append("{" + match.group(1) + "}")
        last = match.end()
    parts.append(text[last:].replace("{", "{{").replace("}", "}}"))
    return "".join(parts)


def to_langchain(template: PromptTemplate) -> BasePromptTemplate:
    """A chat template becomes a ``ChatPromptTemplate``, a text one a ``PromptTemplate``."""
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.prompts import PromptTemplate as TextPromptTemplate

    meta = {"llmops_prompt": template.name, "llmops_source": template.source}
    if isinstance(template.template, str):
        return TextPromptTemplate.from_template(_to_fstring(template.template), metadata=meta)
    messages = [(m["role"], _to_fstring(m["content"])) for m in template.template]
    chat = ChatPromptTemplate.from_messages(messages)
    chat.metadata = meta
    return chat


def load(ref: str, settings: Settings | None = None) -> BasePromptTemplate:
    """Load ``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` from the registry as a LangChain template."""
    return to_langchain(to_template(get_version(ref, settings)))
