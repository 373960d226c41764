"""Promotion: move ``NAME@ALIAS`` to a version, with an audit trail on the version promoted."""

from __future__ import annotations

import getpass
import os
from datetime import datetime, timezone

from llmops.config import Settings
from llmops.registry.kinds import CHAIN_KIND
from llmops.registry.refs import parse_ref
from llmops.registry.versions import model_version

__all__ = ["promote"]


def promote(
    name: str,
    alias: str,
    version: int | None = None,
    settings: Settings | None = None,
    user: str | None = None,
    kind: str = CHAIN_KIND,
) -> int:
    """Move ``name@alias`` to ``version`` (default: the latest) and record who, when and from where.

    The record is kept as tags on the version promoted:
    ``llmops.promoted.<alias>.by``, ``.at`` and ``.from_version``. Chains, adapters and
    the gate all promote through here.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    parse_ref(f"{name}@{alias}")
    target = model_version(f"{name}/{version}" if version is not None else name, settings, kind)
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
