"""The chat models a chain can call: ``local`` (transformers, in process) or ``openai``.

Both are LangChain chat models, so a chain is the same Runnable whichever the
settings pick.
"""

from __future__ import annotations

import os
import threading
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

__all__ = ["LocalChatModel", "build_chat_model"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "user": "user"}
_cache: dict[str, tuple[Any, Any]] = {}
_cache_lock = threading.Lock()


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
        chat = [
            {"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages
        ]
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
    return ChatOpenAI(
        model=settings.model,
        base_url=settings.base_url,
        api_key=os.environ.get(settings.api_key_env, "EMPTY"),  # type: ignore[arg-type]
        temperature=settings.temperature,
        max_completion_tokens=settings.max_tokens,
        timeout=settings.timeout_s,
        max_retries=1,
    )
