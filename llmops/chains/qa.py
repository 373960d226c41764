"""The question-answering chain: a registered prompt, then a chat model."""

from __future__ import annotations

from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import BasePromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from llmops.errors import ChainError

__all__ = ["build_qa_chain", "format_context"]


def format_context(docs: list[Document]) -> str:
    """Retrieved chunks as the prompt's ``context``: each headed by its source."""
    return "\n\n".join(f"[{d.metadata.get('source', '?')}]\n{d.page_content}" for d in docs)


def build_qa_chain(
    prompt: BasePromptTemplate,
    chat_model: BaseChatModel | Runnable[Any, Any],
    versions: dict[str, Any] | None = None,
    retriever: BaseRetriever | None = None,
) -> Runnable[dict[str, Any], dict[str, Any]]:
    """``{"question": ...}`` in, ``{"answer", "sources", ...versions}`` out.

    With a retriever, the top chunks for the question fill the prompt's
    ``{context}`` and their sources come back with the answer. ``versions``
    (prompt, chat model, index, ...) is copied into every answer, so whoever
    reads an answer knows exactly what produced it.
    """
    stamp = dict(versions or {})
    wants_context = "context" in prompt.input_variables
    if wants_context and retriever is None:
        raise ChainError("the prompt takes {{context}} but the chain has no retriever")
    if retriever is not None and not wants_context:
        raise ChainError("the chain has a retriever but its prompt takes no {{context}}")
    answer = prompt | chat_model | StrOutputParser()

    def retrieve(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        docs = retriever.invoke(state["question"], config) if retriever else []
        return {**state, "docs": docs, "context": format_context(docs)}

    def respond(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        inputs = {k: state[k] for k in prompt.input_variables}
        text = answer.invoke(inputs, config)
        sources: list[str] = []
        for d in state["docs"]:
            src = str(d.metadata.get("source", ""))
            if src not in sources:
                sources.append(src)
        return {"answer": text, "sources": sources, **stamp}

    return (RunnableLambda(retrieve) | RunnableLambda(respond)).with_config(run_name="docs_qa")
