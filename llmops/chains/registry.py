"""Registered chains: load one (in process or pointed at an endpoint), invoke it, or ask a
loaded one a question, timed.

Resolving a reference and promotion live in :mod:`llmops.registry`.
"""

from __future__ import annotations

import time
from typing import Any

from llmops.config import Settings
from llmops.registry import adapter_served_name, model_version, parse_ref

__all__ = ["ask", "invoke", "load", "load_at_endpoint"]


def load(ref: str, settings: Settings | None = None) -> Any:
    """Load a registered chain as an MLflow pyfunc model (``NAME``, ``NAME@ALIAS``, ``NAME/V``)."""
    import mlflow.pyfunc

    version = model_version(ref, settings)
    return mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")


def load_at_endpoint(
    version: Any, base_url: str, served_model: str = "base", max_tokens: int | None = None,
    api_key_env: str | None = None, cache_salt: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load a registered chain version with its chat model pointed at an OpenAI-compatible endpoint.

    The endpoint is the gateway or the engine (``base_url`` ends in ``/v1``). A chain
    whose chat-model settings name an adapter calls that adapter's served name.
    ``cache_salt`` goes with each request to a vLLM engine (see ``ChatModelSettings``).
    Returns the pyfunc model and the chain's logged config.
    """
    import mlflow.pyfunc
    from mlflow.models import Model

    local = mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}")
    # a models-from-code config lives in the pyfunc flavor's "config"
    logged = dict(Model.load(local).flavors.get("python_function", {}).get("config") or {})
    chat = dict(logged.get("chat_model") or {})
    adapter = chat.get("adapter")
    if adapter:  # pinned to NAME/VERSION when the chain was logged
        ref = parse_ref(adapter)
        adapter = adapter_served_name(ref.name, ref.version) if ref.version else adapter
    override = {
        "kind": "openai", "model": adapter or served_model, "base_url": base_url,
        "api_key_env": api_key_env or chat.get("api_key_env", "OPENAI_API_KEY"),
        "temperature": chat.get("temperature", 0.0),
        "max_tokens": max_tokens or chat.get("max_tokens", 64),
        "timeout_s": chat.get("timeout_s", 60.0), "adapter": None, "cache_salt": cache_salt,
    }
    model = mlflow.pyfunc.load_model(local, model_config={"chat_model": override,
                                                          "model_path": None})
    return model, {**logged, "served_chat_model": override["model"],
                   "served_adapter": adapter or None}


def invoke(ref: str, question: str, settings: Settings | None = None) -> dict[str, Any]:
    """Ask a registered chain one question; returns its answer dict."""
    model = load(ref, settings)
    return model.predict([{"question": question}])[0]


def ask(model: Any, question: Any) -> dict[str, Any]:
    """One question to a loaded chain, timed; a failure is kept as the row's ``error``.

    Returns ``answer``, ``sources`` (a list), ``prompt_version`` (the prompt's NAME/VERSION),
    ``index_version``, ``latency_ms`` and ``error`` (None on success).
    """
    start = time.perf_counter()
    try:
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"the question is {'empty' if question == '' else repr(question)[:80]}")
        answer = model.predict([{"question": question}])[0]
    except Exception as exc:  # noqa: BLE001 - this row's error; the other rows go on
        return {"answer": None, "sources": [], "prompt_version": None, "index_version": None,
                "latency_ms": (time.perf_counter() - start) * 1000,
                "error": f"{exc.__class__.__name__}: {str(exc)[:500]}"}
    return {"answer": answer.get("answer"), "sources": list(answer.get("sources") or []),
            "prompt_version": answer.get("prompt"), "index_version": answer.get("index_version"),
            "latency_ms": (time.perf_counter() - start) * 1000, "error": None}
