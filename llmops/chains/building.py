"""Turn a :class:`ChainConfig` into the pieces a chain is built from.

A chain file calls :func:`chain_config` to read its configuration (the logged
one when MLflow loads the model, the file's own defaults in development), then
:func:`chain_prompt` and :func:`chain_chat_model` for its prompt and chat model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.prompts import BasePromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable

from llmops.chains.config import ChainConfig, ResolvedPrompt, RetrieverConfig
from llmops.config import ChatModelSettings, Settings, load_settings
from llmops.models.chat_models import build_chat_model
from llmops.prompts.langchain import to_langchain
from llmops.prompts.registry import get_version, to_template
from llmops.prompts.templates import PromptTemplate
from llmops.registry import load_adapter

__all__ = [
    "chain_chat_model",
    "chain_config",
    "chain_prompt",
    "chain_retriever",
    "chain_versions",
    "merge_chat_settings",
    "resolve_prompt",
    "resolve_retriever",
]


def chain_config(defaults: dict[str, Any]) -> ChainConfig:
    """The chain's configuration: MLflow's logged ``model_config`` if there is one, else ``defaults``."""
    from mlflow.models import ModelConfig

    return ChainConfig.model_validate(ModelConfig(development_config=defaults).to_dict())


def resolve_prompt(ref: str, settings: Settings | None = None) -> ResolvedPrompt:
    """Pin a prompt reference to the exact version it names now."""
    version = get_version(ref, settings)
    return ResolvedPrompt(
        name=version.name,
        version=int(version.version),
        uri=f"prompts:/{version.name}/{version.version}",
        template=version.template,
        model_parameters=dict(version.model_config or {}),
    )


def chain_prompt(config: ChainConfig, settings: Settings | None = None) -> BasePromptTemplate:
    """The chain's prompt: the pinned template when logged, else looked up in the registry."""
    if config.resolved_prompt is not None:
        rp = config.resolved_prompt
        template = PromptTemplate.draft(rp.template, name=rp.name,
                                        model_parameters=rp.model_parameters)
    else:
        template = to_template(get_version(config.prompt, settings))
    return prompt_with_demonstrations(template)


def prompt_with_demonstrations(template: PromptTemplate) -> BasePromptTemplate:
    """``template`` as LangChain's; with the demonstrations its version carries (an optimized
    version), the closest of them put before each question (``demonstrations``)."""
    from llmops.chains.demonstrations import RetrievedDemonstrationsPrompt, demonstration_settings

    prompt = to_langchain(template)
    found = demonstration_settings(template.model_parameters)
    return RetrievedDemonstrationsPrompt.wrap(prompt, found) if found else prompt


def merge_chat_settings(own: ChatModelSettings | None, env: ChatModelSettings) -> ChatModelSettings:
    """A chain's chat model: the fields its file sets, laid over the environment's."""
    if own is None:
        return env
    return env.model_copy(update={k: getattr(own, k) for k in own.model_fields_set})


def _chat_settings(
    config: ChainConfig, settings: Settings | None
) -> tuple[ChatModelSettings, Settings | None]:
    own = config.chat_model
    if own is not None and own.model_fields_set >= set(ChatModelSettings.model_fields):
        return own, settings  # written out in full (a logged chain): no environment needed
    settings = settings or load_settings()
    return merge_chat_settings(config.chat_model, settings.chat_model), settings


_BINDABLE = ("temperature", "max_tokens", "stop")


def _prompt_parameters(config: ChainConfig, settings: Settings | None) -> dict[str, Any]:
    if config.resolved_prompt is not None:
        params = config.resolved_prompt.model_parameters
    else:
        params = dict(get_version(config.prompt, settings).model_config or {})
    return {k: params[k] for k in _BINDABLE if k in params}


def chain_chat_model(config: ChainConfig, settings: Settings | None = None) -> Runnable[Any, Any]:
    """The chain's chat model, with the prompt version's model parameters bound to it.

    The environment's chat-model settings give the defaults; a prompt version's
    own ``temperature`` / ``max_tokens`` win, since they are versioned with it.
    A logged local model path is used while it exists; otherwise the model is
    rebuilt (``tiny``) or loaded by id as the settings say.
    """
    chat, settings = _chat_settings(config, settings)
    adapter_path = None
    if chat.adapter:
        # the adapter comes from the registry: a local model merges its folder in, an
        # endpoint is asked for it by the name the engine serves it under
        found = load_adapter(chat.adapter, settings or load_settings())
        if chat.kind == "local":
            adapter_path = str(found.path)
        else:
            chat = chat.model_copy(update={"model": found.served_name})
    if chat.kind == "local" and config.model_path and Path(config.model_path).is_dir():
        chat = chat.model_copy(update={"model": config.model_path})
        model = build_chat_model(chat, Path(config.model_path).parent, adapter_path=adapter_path)
    else:
        settings = settings or load_settings()
        model = build_chat_model(chat, settings.models_dir, settings.root / "docs",
                                 adapter_path=adapter_path)
    params = _prompt_parameters(config, settings)
    return model.bind(**params) if params else model


def chain_versions(config: ChainConfig) -> dict[str, str]:
    """The versions stamped on every answer: the pinned prompt, the chat model, the index."""
    rp = config.resolved_prompt
    chat = config.chat_model
    versions = {
        "prompt": f"{rp.name}/{rp.version}" if rp else config.prompt,
        "chat_model": f"{chat.kind}:{chat.model}" if chat else "environment default",
    }
    if chat is not None and chat.adapter:
        versions["adapter"] = chat.adapter
    if config.retriever is not None:
        versions["index_version"] = config.retriever.index_version or "live"
    return versions


def resolve_retriever(config: ChainConfig, settings: Settings) -> RetrieverConfig | None:
    """Pin the retriever to where the collection is and the index version it holds now."""
    if config.retriever is None:
        return None
    from llmops.indexing.versions import current_index_version

    collection = config.retriever.collection or settings.index.collection
    version, _ = current_index_version(settings, collection)
    return RetrieverConfig(
        collection=collection,
        k=config.retriever.k or settings.index.top_k,
        search=config.retriever.search or settings.index.search,
        chroma=settings.chroma,
        embedder=settings.index.embedder,
        index_version=version,
    )


def chain_retriever(config: ChainConfig, settings: Settings | None = None) -> BaseRetriever | None:
    """The chain's retriever: as pinned at log time, else from the environment's settings."""
    if config.retriever is None:
        return None
    from llmops.indexing.retriever import IndexRetriever

    rc = config.retriever
    if rc.chroma is None:
        settings = settings or load_settings()
        rc = RetrieverConfig(
            collection=rc.collection or settings.index.collection,
            k=rc.k or settings.index.top_k,
            search=rc.search or settings.index.search,
            chroma=settings.chroma,
            embedder=settings.index.embedder,
        )
    # a chain logged before search was pinned keeps the embeddings-only search it was logged with
    return IndexRetriever(
        collection=rc.collection or "docs", chroma=rc.chroma, embedder=rc.embedder or "minilm",
        k=rc.k or 3, search=rc.search or "dense",
    )
