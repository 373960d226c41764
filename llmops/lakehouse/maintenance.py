"""Keep the lakehouse tables fast to read: compact small files, remove unreferenced ones.

The gateway commits about once a second, so its tables gather many small files.
``optimize_tables`` rewrites them into few large ones in one commit (Delta
serializes it with concurrent appends, so it is safe while the gateway writes);
``vacuum_tables`` deletes the files no version within the retention still needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmops.errors import LlmopsError, MissingExtraError
from llmops.lakehouse.location import (
    LakehouseRoot,
    is_remote,
    remote_error,
    storage_options,
    table_exists,
    table_uri,
)
from llmops.lakehouse.tables import TABLES

__all__ = ["DEFAULT_RETENTION_HOURS", "MIN_RETENTION_HOURS", "optimize_tables", "vacuum_tables"]

# Delta's own default (delta.deletedFileRetentionDuration): readers and time travel
# within a week of a compaction still find their files.
DEFAULT_RETENTION_HOURS = 168
# A writer's data files exist before its commit names them; vacuum deletes any file
# older than the retention that no commit names, so a retention shorter than the
# slowest in-flight write could delete a file a concurrent commit is about to add.
MIN_RETENTION_HOURS = 1


def _existing(lakehouse: LakehouseRoot, tables: list[str] | None) -> list[tuple[str, str]]:
    """The named tables (each must be a lakehouse table), or every one that exists."""
    unknown = [t for t in tables or [] if t not in TABLES]
    if unknown:
        raise LlmopsError(f"unknown table(s) {', '.join(unknown)}: the lakehouse tables are "
                          f"{', '.join(TABLES)}")
    names = tables or list(TABLES)
    return [(name, table_uri(lakehouse, name)) for name in names
            if table_exists(lakehouse, name)]


def _delta_table(lakehouse: LakehouseRoot, uri: str) -> Any:
    try:
        from deltalake import DeltaTable
    except ImportError as exc:
        raise MissingExtraError(exc.name or "deltalake", "index") from exc
    return DeltaTable(uri, storage_options=storage_options(lakehouse))


def _failed(lakehouse: LakehouseRoot, doing: str, exc: Exception) -> LlmopsError:
    if is_remote(lakehouse):
        return remote_error(lakehouse, exc, doing)
    return LlmopsError(f"{doing}: {exc}")


def _sizes(lakehouse: LakehouseRoot, uri: str, files: list[str]) -> dict[str, int]:
    """The size of each of ``files`` (relative to the table at ``uri``) that exists."""
    if not is_remote(lakehouse):
        return {f: (Path(uri) / f).stat().st_size for f in files if (Path(uri) / f).is_file()}
    import os

    from pyarrow import fs

    endpoint = (storage_options(lakehouse) or {}).get("AWS_ENDPOINT_URL", "")
    s3 = fs.S3FileSystem(
        endpoint_override=endpoint.split("://", 1)[-1] or None,
        scheme="http" if endpoint.startswith("http://") else "https",
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    root = uri.split("://", 1)[1].rstrip("/")
    infos = s3.get_file_info([f"{root}/{f}" for f in files]) if files else []
    return {f: int(i.size) for f, i in zip(files, infos, strict=True)
            if i.type == fs.FileType.File and i.size is not None}


def _size(metrics: Any) -> int:
    """``totalSize`` of optimize's ``filesAdded``/``filesRemoved`` (a JSON string or a dict)."""
    stats = json.loads(metrics) if isinstance(metrics, str) else metrics or {}
    return int(stats.get("totalSize") or 0)


def optimize_tables(lakehouse: LakehouseRoot, tables: list[str] | None = None) -> list[dict[str, Any]]:
    """Compact each table's small files (one Delta commit per table).

    Returns one dict per table: ``table``, ``files_removed``, ``files_added``,
    ``bytes_removed``, ``bytes_added``. Rows and their order are unchanged.
    """
    out = []
    for name, uri in _existing(lakehouse, tables):
        try:
            metrics = _delta_table(lakehouse, uri).optimize.compact()
        except LlmopsError:
            raise
        except Exception as exc:
            raise _failed(lakehouse, f"optimize {name}", exc) from exc
        out.append({
            "table": name,
            "files_removed": int(metrics.get("numFilesRemoved", 0)),
            "files_added": int(metrics.get("numFilesAdded", 0)),
            "bytes_removed": _size(metrics.get("filesRemoved")),
            "bytes_added": _size(metrics.get("filesAdded")),
        })
    return out


def vacuum_tables(lakehouse: LakehouseRoot, tables: list[str] | None = None,
                  retention_hours: float = DEFAULT_RETENTION_HOURS, dry_run: bool = False,
                  force: bool = False) -> list[dict[str, Any]]:
    """Delete files no table version within ``retention_hours`` references.

    A retention under ``MIN_RETENTION_HOURS`` is refused unless ``force``: it can
    delete the data file of a write in progress. Returns one dict per table:
    ``table``, ``files`` (the paths, relative to the table), ``bytes``, ``dry_run``.
    """
    if retention_hours < 0:
        raise LlmopsError(f"retention must not be negative, got {retention_hours} hours")
    if retention_hours < MIN_RETENTION_HOURS and not force:
        raise LlmopsError(
            f"a retention of {retention_hours} hours could delete files a running writer is "
            f"about to commit; use at least {MIN_RETENTION_HOURS} hour(s), or force it when "
            f"nothing writes to the lakehouse")
    # Delta counts whole hours; round up so that no file younger than asked goes.
    hours = int(-(-retention_hours // 1))
    out = []
    for name, uri in _existing(lakehouse, tables):
        try:
            table = _delta_table(lakehouse, uri)
            # our own floor above replaces Delta's check against the table's configured retention
            listed = table.vacuum(retention_hours=hours, dry_run=True,
                                  enforce_retention_duration=False)
            sizes = _sizes(lakehouse, uri, list(listed))
            # the log's tombstones outlive their files: list only what is still there
            listed = [f for f in listed if f in sizes]
            files = listed if dry_run else table.vacuum(
                retention_hours=hours, dry_run=False, enforce_retention_duration=False)
        except LlmopsError:
            raise
        except Exception as exc:
            raise _failed(lakehouse, f"vacuum {name}", exc) from exc
        out.append({"table": name, "files": list(files),
                    "bytes": sum(sizes.get(f, 0) for f in files), "dry_run": dry_run})
    return out
