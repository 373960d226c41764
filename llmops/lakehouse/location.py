"""Where an environment's tables live: a local folder (the embedded default) or object storage.

``lakehouse:`` in ``llmops.yaml`` is a folder, or an ``s3://bucket/prefix`` URI. A root is
passed around as a ``Path`` (a folder) or a ``str`` (a URI); every table function takes
either. On S3, deltalake's object store writes each commit with a conditional put (``If-None-
Match``), so concurrent writers from any number of processes and hosts are safe without a lock
service: a writer that loses the race for a version reads the winner's commit and tries the
next one.

Credentials and the endpoint come from the usual AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` for an
S3-compatible server), read by the object store itself; none of them is ever written to a
message or a log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmops.config import LAKEHOUSE_SCHEMES, LakehouseRoot
from llmops.errors import LlmopsError

__all__ = ["LakehouseError", "LakehouseRoot", "is_remote", "open_table", "remote_error",
           "storage_options", "table_exists", "table_uri"]
_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


class LakehouseError(LlmopsError):
    """The lakehouse's storage cannot be reached or used (bucket, credentials, endpoint)."""


def is_remote(root: LakehouseRoot) -> bool:
    """Whether ``root`` is an object-store URI (``s3://``) rather than a folder."""
    return isinstance(root, str) and root.startswith(LAKEHOUSE_SCHEMES)


def table_uri(root: LakehouseRoot, table: str) -> str:
    """The URI (or folder) of ``table`` under ``root``, as deltalake takes it."""
    if is_remote(root):
        return f"{str(root).rstrip('/')}/{table}"
    return str(Path(root) / table)


def storage_options(root: LakehouseRoot) -> dict[str, str] | None:
    """deltalake's ``storage_options`` for ``root`` (None for a folder).

    Only what the AWS variables cannot say themselves: plain HTTP is allowed when the
    endpoint (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``) is an ``http://`` URL (an
    S3-compatible server on a private network). Credentials stay in the environment.
    """
    if not is_remote(root):
        return None
    options: dict[str, str] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        options["AWS_REGION"] = "us-east-1"
    return options


def table_exists(root: LakehouseRoot, table: str) -> bool:
    """Whether ``table`` has been written under ``root``."""
    if not is_remote(root):
        return (Path(root) / table / "_delta_log").is_dir()
    from deltalake import DeltaTable

    try:
        return bool(DeltaTable.is_deltatable(table_uri(root, table),
                                             storage_options=storage_options(root)))
    except Exception as exc:  # noqa: BLE001 - said in one line by remote_error
        raise remote_error(root, exc) from exc


def remote_error(root: LakehouseRoot, exc: BaseException, doing: str = "reach") -> LlmopsError:
    """One line saying why the lakehouse on object storage at ``root`` could not be used,
    naming the setting to check; no credential ever appears in it (callers raise a folder's
    errors as they are)."""
    if isinstance(exc, LlmopsError):
        return exc
    text = str(exc)
    for name in _SECRETS:
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "***")
    low = text.lower()
    if "nosuchbucket" in low or "bucket does not exist" in low or "bucket not found" in low:
        why = "the bucket does not exist (check the lakehouse setting in llmops.yaml)"
    elif any(s in low for s in ("invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied",
                                "forbidden", "403", "missing credentials", "credential")):
        why = ("the credentials were refused (check AWS_ACCESS_KEY_ID / "
               "AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN)")
    elif any(s in low for s in ("connection refused", "error sending request", "dns",
                                "timed out", "connect", "tcp")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        why = (f"the endpoint {endpoint} cannot be reached (check AWS_ENDPOINT_URL)" if endpoint
               else "S3 cannot be reached (check the network, AWS_REGION and AWS_ENDPOINT_URL)")
    else:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        why = first[:300] or type(exc).__name__
    return LakehouseError(f"cannot {doing} the lakehouse {root}: {why}")



def open_table(root: LakehouseRoot, table: str) -> Any:
    """``table``'s ``deltalake.DeltaTable`` at its latest version, or None if never written."""
    if not table_exists(root, table):
        return None
    from deltalake import DeltaTable

    try:
        return DeltaTable(table_uri(root, table), storage_options=storage_options(root))
    except Exception as exc:
        if is_remote(root):
            raise remote_error(root, exc, f"open {table} in") from exc
        raise
