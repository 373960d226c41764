"""The chat models a chain can call: ``local`` (transformers, in process) or ``openai``.

Both are LangChain chat models, so a chain is the same Runnable whichever the
settings pick.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

from llmops.config import ChatModelSettings
from llmops.errors import ChatModelError, MissingExtraError
from llmops.models.catalog import resolve_model

__all__ = ["DeferredCall", "DeferredCalls", "DeferredChatModel", "LocalChatModel", "build_chat_model",
           "deferred_chat_models"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "user": "user"}
_cache: dict[str, tuple[Any, Any]] = {}
_cache_lock = threading.Lock()


def _chat(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as the role/content dicts a chat template takes."""
    return [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]


def _load(path: str, adapter_path: str | None = None) -> tuple[Any, Any]:
    """Tokenizer and model for ``path`` (with a LoRA adapter merged in), loaded once per process."""
    key = f"{path}::{adapter_path or ''}"
    with _cache_lock:
        if key not in _cache:
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as exc:
                raise MissingExtraError(exc.name or "transformers", "local") from exc
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            except (OSError, ValueError) as exc:
                raise ChatModelError(
                    f"cannot load the local chat model '{path}': {exc.__class__.__name__}; "
                    "check chat_model.model in llmops.yaml (a folder, 'smollm2', 'tiny', or a model id)"
                ) from exc
            if adapter_path:
                try:
                    from peft import PeftModel
                except ImportError as exc:
                    raise MissingExtraError("peft", "finetune") from exc
                try:
                    model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
                except (OSError, ValueError, RuntimeError) as exc:
                    raise ChatModelError(
                        f"cannot apply the LoRA adapter '{adapter_path}' to '{path}': "
                        f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    ) from exc
            model.eval()
            _cache[key] = (tokenizer, model)
        return _cache[key]


class LocalChatModel(BaseChatModel):
    """A transformers causal LM with a chat template, run in this process."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    adapter_path: str | None = None
    temperature: float = 0.0
    max_tokens: int = 64

    @property
    def _llm_type(self) -> str:
        return "llmops-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "adapter_path": self.adapter_path,
                "temperature": self.temperature}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import torch

        tokenizer, model = _load(self.model_path, self.adapter_path)
        chat = _chat(messages)
        enc = tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        max_tokens = int(kwargs.get("max_tokens", self.max_tokens))
        temperature = float(kwargs.get("temperature", self.temperature))
        gen: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        if temperature > 0:
            gen.update(do_sample=True, temperature=temperature)
        else:
            gen.update(do_sample=False)
        if stop:
            gen.update(stop_strings=list(stop), tokenizer=tokenizer)
        with torch.inference_mode():
            out = model.generate(**enc, **gen)
        new = out[0][enc["input_ids"].shape[1] :]
        text = tokenizer.decode(new, skip_special_tokens=True).strip()
        for s in stop or []:
            text = text.split(s)[0]
        usage = {
            "input_tokens": int(enc["input_ids"].shape[1]),
            "output_tokens": int(new.shape[0]),
            "total_tokens": int(enc["input_ids"].shape[1] + new.shape[0]),
        }
        message = AIMessage(content=text, usage_metadata=usage)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=message)])


def build_chat_model(
    settings: ChatModelSettings, models_dir: Path, docs_dir: Path | None = None,
    adapter_path: str | None = None,
) -> BaseChatModel:
    """The LangChain chat model the settings describe.

    A local model gets ``adapter_path`` (the registered adapter's folder) merged in;
    an OpenAI-compatible endpoint is asked for the adapter by its served name
    (``settings.model``, which the caller sets).
    """
    deferred = _deferred.get()
    if deferred is not None:
        if settings.kind != "local":
            raise ChatModelError(
                f"the chain's chat model is an endpoint ('{settings.kind}': {settings.model}); "
                "only a local model (chat_model.kind 'local') can run in a batch engine")
        deferred.models.append((resolve_model(settings.model, models_dir, docs_dir), adapter_path))
        return DeferredChatModel(
            calls=deferred, model_path=deferred.models[-1][0],
            adapter_path=adapter_path, temperature=settings.temperature,
            max_tokens=settings.max_tokens)
    if settings.kind == "local":
        return LocalChatModel(
            model_path=resolve_model(settings.model, models_dir, docs_dir),
            adapter_path=adapter_path,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
        )
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise MissingExtraError("langchain-openai", "openai") from exc
    if not settings.base_url:
        raise ChatModelError("chat_model.base_url is required when chat_model.kind is 'openai'")
    import openai

    return ChatOpenAI(
        model=settings.model,
        base_url=settings.base_url,
        api_key=os.environ.get(settings.api_key_env, "EMPTY"),  # type: ignore[arg-type]
        temperature=settings.temperature,
        max_completion_tokens=settings.max_tokens,
        timeout=settings.timeout_s,
        max_retries=1,
        extra_body={"cache_salt": settings.cache_salt} if settings.cache_salt else None,
        # the caller's trace goes with each request, so that the engine's spans join it
        http_client=openai.DefaultHttpxClient(event_hooks={"request": [_send_trace_context]}),
    )


def _send_trace_context(request: Any) -> None:
    """Put the current span's ``traceparent`` on an outgoing request (none without a span)."""
    from opentelemetry import propagate

    propagate.inject(request.headers)


class DeferredCall:
    """One chat-model call recorded instead of run: what an engine must generate."""

    def __init__(self, messages: list[dict[str, str]], temperature: float, max_tokens: int,
                 stop: list[str] | None) -> None:
        self.messages, self.stop = messages, stop
        self.temperature, self.max_tokens = temperature, max_tokens


class DeferredCalls:
    """The calls the chat models built under :func:`deferred_chat_models` recorded.

    Each call answers a marker naming it; :meth:`take` turns a chain's answer back into the
    call that produced it, so an engine can generate the real text later, in batch.
    """

    MARK = "\u2063llmops-deferred-call:"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, DeferredCall] = {}
        self.made = 0
        #: (model folder, adapter folder or None) of each chat model built deferred
        self.models: list[tuple[str, str | None]] = []

    def record(self, call: DeferredCall) -> str:
        with self._lock:
            self.made += 1
            key = f"{self.MARK}{self.made}"
            self._calls[key] = call
        return key

    def take(self, answer: Any) -> DeferredCall:
        """The call whose text ``answer`` is; raises when the answer is not a call's text."""
        with self._lock:
            call = self._calls.pop(answer, None) if isinstance(answer, str) else None
        if call is None:
            raise ChatModelError(
                "the chain's answer is not its chat model's text (it transforms it, or makes "
                "no call): only a chain that answers with the model's text can run its model "
                "in a batch engine; use the serving endpoint instead")
        return call

    def discard(self) -> None:
        with self._lock:
            self._calls.clear()


_deferred: ContextVar[DeferredCalls | None] = ContextVar("llmops_deferred_calls", default=None)


@contextlib.contextmanager
def deferred_chat_models() -> Iterator[DeferredCalls]:
    """Chat models built in the block (a chain loaded from the registry, say) record their
    calls instead of running a model; a batch engine (vLLM) generates the texts later."""
    calls = DeferredCalls()
    token = _deferred.set(calls)
    try:
        yield calls
    finally:
        _deferred.reset(token)


class DeferredChatModel(LocalChatModel):
    """A local chat model whose calls are recorded in ``calls``, not run (see
    :func:`deferred_chat_models`)."""

    calls: Any

    @property
    def _llm_type(self) -> str:
        return "llmops-deferred"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        key = self.calls.record(DeferredCall(
            _chat(messages), float(kwargs.get("temperature", self.temperature)),
            int(kwargs.get("max_tokens", self.max_tokens)), list(stop) if stop else None))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=key))])
