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
from llmops.telemetry import chat_span_name, content_capture, set_usage, tracer
from llmops.telemetry.genai import OPERATION, PROVIDER, REQUEST_MODEL, redact_content

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


def _provider(chat_model: Any) -> str:
    """``gen_ai.provider.name`` of a chat model: the engine behind an OpenAI-compatible one."""
    base = str(getattr(chat_model, "openai_api_base", None) or "")
    if not base:
        return "transformers" if hasattr(chat_model, "model_path") else "unknown"
    return "openai" if "api.openai.com" in base else "vllm"


def _model_name(chat_model: Any) -> str | None:
    name = getattr(chat_model, "model_name", None) or getattr(chat_model, "model", None)
    return str(name) if isinstance(name, str) and name else None


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
    to_text = StrOutputParser()
    model_name, provider = _model_name(chat_model), _provider(chat_model)

    def retrieve(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        if retriever is None:
            return {**state, "docs": [], "context": format_context([]), "index_version": None}
        # a child of the caller's span (the gateway's request), where there is one
        with tracer().start_as_current_span("retrieval", attributes={
                OPERATION: "retrieval", "gen_ai.retrieval.top_k": int(
                    getattr(retriever, "k", 0) or 0)}) as span:
            docs = retriever.invoke(state["question"], config)
            read = _read_version(docs, retriever)
            if span.is_recording():
                span.set_attribute("llmops.retrieval.documents", len(docs))
                if read:
                    span.set_attribute("llmops.index.version", read)
                if content_capture():
                    span.set_attribute("gen_ai.retrieval.query.text",
                                       redact_content(state["question"]))
        return {**state, "docs": docs, "context": format_context(docs), "index_version": read}

    def respond(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        from opentelemetry.trace import SpanKind

        inputs = {k: state[k] for k in prompt.input_variables}
        rendered = prompt.invoke(inputs, config)
        attributes = {OPERATION: "chat", PROVIDER: provider}
        if model_name:
            attributes[REQUEST_MODEL] = model_name
        # the model call's span: its context goes to the engine as traceparent (chat_models)
        with tracer().start_as_current_span(chat_span_name("chat", model_name),
                                            kind=SpanKind.CLIENT, attributes=attributes) as span:
            message = chat_model.invoke(rendered, config)
            usage = getattr(message, "usage_metadata", None) or {}
            set_usage(span, usage.get("input_tokens"), usage.get("output_tokens"))
        text = to_text.invoke(message, config)
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
