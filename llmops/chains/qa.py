"""The question-answering chain: a registered prompt, then a chat model."""

from __future__ import annotations

from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import BasePromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from llmops.errors import ChainError

__all__ = ["build_qa_chain", "format_context", "served_messages"]


def format_context(docs: list[Document]) -> str:
    """Retrieved chunks as the prompt's ``context``: each headed by its source."""
    return "\n\n".join(f"[{d.metadata.get('source', '?')}]\n{d.page_content}" for d in docs)


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def served_messages(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as the OpenAI-style ``{"role", "content"}`` dicts a chat model is sent."""
    return [{"role": getattr(m, "role", None) or _ROLES.get(m.type, m.type), "content": m.content}
            for m in messages]


def _read_version(docs: list[Document], retriever: BaseRetriever | None) -> str | None:
    """The index version the retrieval read: stamped on its documents by an
    ``IndexRetriever``, or asked of it when nothing was found."""
    for d in docs:
        if d.metadata.get("index_version"):
            return str(d.metadata["index_version"])
    current = getattr(retriever, "current_version", None)
    return str(current()) if callable(current) else None


def build_qa_chain(
    prompt: BasePromptTemplate,
    chat_model: BaseChatModel | Runnable[Any, Any],
    versions: dict[str, Any] | None = None,
    retriever: BaseRetriever | None = None,
) -> Runnable[dict[str, Any], dict[str, Any]]:
    """``{"question": ...}`` in, ``{"answer", "sources", "messages", ...versions}`` out.

    With a retriever, the top chunks for the question fill the prompt's
    ``{context}`` and their sources come back with the answer. ``versions``
    (prompt, chat model, ...) is copied into every answer, so whoever reads an
    answer knows exactly what produced it; ``index_version`` is the version of the
    collection the retriever read for this answer (the logged one only for a
    retriever that cannot tell). ``messages`` are the rendered messages the chat
    model was sent (``{"role", "content"}`` dicts: system prompt, context, question),
    what a fine-tuning row built from this answer must train on.
    """
    stamp = dict(versions or {})
    wants_context = "context" in prompt.input_variables
    if wants_context and retriever is None:
        raise ChainError("the prompt takes {{context}} but the chain has no retriever")
    if retriever is not None and not wants_context:
        raise ChainError("the chain has a retriever but its prompt takes no {{context}}")
    generate = chat_model | StrOutputParser()

    def retrieve(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        docs = retriever.invoke(state["question"], config) if retriever else []
        read = _read_version(docs, retriever) if retriever else None
        return {**state, "docs": docs, "context": format_context(docs), "index_version": read}

    def respond(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        inputs = {k: state[k] for k in prompt.input_variables}
        rendered = prompt.invoke(inputs, config)
        text = generate.invoke(rendered, config)
        sources: list[str] = []
        for d in state["docs"]:
            src = str(d.metadata.get("source", ""))
            if src not in sources:
                sources.append(src)
        answer = {"answer": text, "sources": sources, **stamp,
                  "messages": served_messages(rendered.to_messages())}
        if state.get("index_version"):
            answer["index_version"] = state["index_version"]
        return answer

    return (RunnableLambda(retrieve) | RunnableLambda(respond)).with_config(run_name="docs_qa")
