"""The question-answering chain: a registered prompt, then a chat model."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

__all__ = ["build_qa_chain"]


def build_qa_chain(
    prompt: BasePromptTemplate,
    chat_model: BaseChatModel | Runnable[Any, Any],
    versions: dict[str, Any] | None = None,
) -> Runnable[dict[str, Any], dict[str, Any]]:
    """``{"question": ...}`` in, ``{"answer": ..., "sources": [...], ...versions}`` out.

    ``versions`` (prompt, chat model, ...) is copied into every answer, so whoever
    reads an answer knows exactly what produced it.
    """
    stamp = dict(versions or {})
    answer = prompt | chat_model | StrOutputParser()

    def finish(state: dict[str, Any]) -> dict[str, Any]:
        return {"answer": state["answer"], "sources": [], **stamp}

    return (RunnablePassthrough.assign(answer=answer) | RunnableLambda(finish)).with_config(
        run_name="docs_qa"
    )
