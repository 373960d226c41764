"""Resolve a reference (``NAME``, ``NAME@ALIAS``, ``NAME/VERSION``) to a registered model version."""

from __future__ import annotations

from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import FinetuneError, ModelNotFoundError
from llmops.registry.kinds import ADAPTER_KIND, CHAIN_KIND, KIND_TAG
from llmops.registry.refs import parse_ref
from llmops.stores import connect

__all__ = ["model_version"]

# what a missing reference is called, and how to make one, per kind
_MISSING = {
    CHAIN_KIND: ("model", "log one with 'llmops chains log FILE' or check the name, alias and version",
                 "log one with 'llmops chains log FILE'"),
    ADAPTER_KIND: ("adapter", "train one with 'llmops finetune run', or check the name, alias and "
                   "version", "train one with 'llmops finetune run'"),
}


def model_version(ref: str, settings: Settings | None = None, kind: str = CHAIN_KIND) -> Any:
    """The ``ModelVersion`` a reference names (``NAME`` means the latest version).

    ``kind`` words the error for a missing reference; an ``adapter`` reference must
    also name a version tagged as one.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    what, no_such, no_versions = _MISSING[kind]
    parsed = parse_ref(ref, "models")
    connect(settings or load_settings())
    client = MlflowClient()
    try:
        if parsed.alias:
            found = client.get_model_version_by_alias(parsed.name, parsed.alias)
        elif parsed.version is not None:
            found = client.get_model_version(parsed.name, str(parsed.version))
        else:
            versions = client.search_model_versions(f"name = '{parsed.name}'")
            found = max(versions, key=lambda v: int(v.version)) if versions else None
    except MlflowException as exc:
        raise ModelNotFoundError(f"{what} '{parsed}' does not exist: {no_such}") from exc
    if found is None:
        raise ModelNotFoundError(f"{what} '{parsed.name}' has no versions: {no_versions}")
    if kind == ADAPTER_KIND and (found.tags or {}).get(KIND_TAG) != ADAPTER_KIND:
        raise FinetuneError(
            f"'{parsed}' is model version {found.name}/{found.version}, which is not a LoRA adapter"
        )
    return found
