"""Registered chains: load, invoke, and promote between aliases with an audit trail."""

from __future__ import annotations

import getpass
import os
from datetime import datetime, timezone
from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import ModelNotFoundError
from llmops.refs import adapter_served_name, parse_ref
from llmops.stores import connect

__all__ = ["invoke", "load", "load_at_endpoint", "model_version", "promote"]


def model_version(ref: str, settings: Settings | None = None) -> Any:
    """The ``ModelVersion`` a reference names (``NAME`` means the latest version)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    parsed = parse_ref(ref, "models")
    connect(settings or load_settings())
    client = MlflowClient()
    try:
        if parsed.alias:
            return client.get_model_version_by_alias(parsed.name, parsed.alias)
        if parsed.version is not None:
            return client.get_model_version(parsed.name, str(parsed.version))
        versions = client.search_model_versions(f"name = '{parsed.name}'")
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"model '{parsed}' does not exist: log one with 'llmops chains log FILE' "
            "or check the name, alias and version"
        ) from exc
    if not versions:
        raise ModelNotFoundError(
            f"model '{parsed.name}' has no versions: log one with 'llmops chains log FILE'"
        )
    return max(versions, key=lambda v: int(v.version))


def load(ref: str, settings: Settings | None = None) -> Any:
    """Load a registered chain as an MLflow pyfunc model (``NAME``, ``NAME@ALIAS``, ``NAME/V``)."""
    import mlflow.pyfunc

    version = model_version(ref, settings)
    return mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")


def load_at_endpoint(
    version: Any, base_url: str, served_model: str = "base", max_tokens: int | None = None,
    api_key_env: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load a registered chain version with its chat model pointed at an OpenAI-compatible endpoint.

    The endpoint is the gateway or the engine (``base_url`` ends in ``/v1``). A chain
    whose chat-model settings name an adapter calls that adapter's served name.
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
        "timeout_s": chat.get("timeout_s", 60.0), "adapter": None,
    }
    model = mlflow.pyfunc.load_model(local, model_config={"chat_model": override,
                                                          "model_path": None})
    return model, {**logged, "served_chat_model": override["model"],
                   "served_adapter": adapter or None}


def invoke(ref: str, question: str, settings: Settings | None = None) -> dict[str, Any]:
    """Ask a registered chain one question; returns its answer dict."""
    model = load(ref, settings)
    return model.predict([{"question": question}])[0]


def promote(
    name: str,
    alias: str,
    version: int | None = None,
    settings: Settings | None = None,
    user: str | None = None,
) -> int:
    """Move ``name@alias`` to ``version`` (default: the latest) and record who, when and from where.

    The record is kept as tags on the version promoted:
    ``llmops.promoted.<alias>.by``, ``.at`` and ``.from_version``.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    parse_ref(f"{name}@{alias}")
    target = model_version(f"{name}/{version}" if version is not None else name, settings)
    client = MlflowClient()
    try:
        previous = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        previous = "none"
    client.set_registered_model_alias(name, alias, target.version)
    who = user or os.environ.get("LLMOPS_USER") or getpass.getuser()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for key, value in (("by", who), ("at", stamp), ("from_version", str(previous))):
        client.set_model_version_tag(name, target.version, f"llmops.promoted.{alias}.{key}", value)
    return int(target.version)
