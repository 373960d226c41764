"""Delete the rows older than a retention from the lakehouse tables, and then their files.

A Delta ``delete`` rewrites the files that hold old rows and tombstones the originals; the
personal data in them stays on disk until a vacuum removes those files. Delta's vacuum
cannot choose files: a vacuum short enough to catch the files just tombstoned would also
delete any data file a concurrent writer has written and not committed yet (see
``MIN_RETENTION_HOURS``). So ``retain_tables`` vacuums with at least that minimum retention
(the files this run tombstones go at the next run), and ``purge_now`` deletes exactly the
files this delete tombstoned, at once, by name: files that were committed and are no longer
in the table, which no writer will ever commit again. That is safe while gateways write; only
a reader still scanning a version from before the delete loses its files.

The delete is a Delta commit that removes data, so an append that loaded the table before it
and commits after it fails once with a conflict ("a concurrent transaction deleted data this
operation read"); nothing is lost: the gateway's write-ahead log commits those rows at its
next flush, and another writer sees the error and can append again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from llmops.errors import LlmopsError
from llmops.lakehouse.location import LakehouseRoot, storage_options
from llmops.lakehouse.maintenance import (
    MIN_RETENTION_HOURS,
    _delta_table,
    _existing,
    _failed,
    vacuum_tables,
)
from llmops.lakehouse.tables import TABLES
from llmops.lakehouse.writer import _is_conflict

__all__ = ["retain_tables", "time_column"]

# a delete that loses the race to another commit (an optimize) reads the table again
_ATTEMPTS = 5


def time_column(table: str) -> str | None:
    """The column that dates a row of ``table`` (its event time), or None if it has none."""
    return "ts" if TABLES.get(table, {}).get("ts") == "timestamp" else None


def _files(delta: Any) -> set[str]:
    """The data files (paths relative to the table) of the version ``delta`` holds."""
    return set(delta.get_add_actions(flatten=True).column("path").to_pylist())


def _older(delta: Any, column: str, cutoff: datetime) -> int:
    import pyarrow.compute as pc

    return int(delta.to_pyarrow_dataset().count_rows(filter=pc.field(column) < cutoff))


def _delete(lakehouse: LakehouseRoot, uri: str, column: str,
            cutoff: datetime) -> tuple[int, dict[str, Any], set[str]]:
    """Delete the rows older than ``cutoff``: (rows deleted, Delta's metrics, the files the
    delete tombstoned). No commit when no row is that old."""
    from deltalake import DeltaTable

    for attempt in range(_ATTEMPTS):
        delta = _delta_table(lakehouse, uri)
        rows = _older(delta, column, cutoff)
        if not rows:
            return 0, {}, set()
        try:
            metrics = delta.delete(f"{column} < '{cutoff.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'")
        except Exception as exc:
            if _is_conflict(exc) and attempt < _ATTEMPTS - 1:
                continue
            raise
        version = int(delta.version())
        # the version before the delete's own commit (others may have landed since we read)
        before = DeltaTable(uri, version=version - 1, storage_options=storage_options(lakehouse))
        return int(metrics.get("num_deleted_rows", rows)), metrics, _files(before) - _files(delta)
    raise AssertionError("unreachable")


def _purge(lakehouse: LakehouseRoot, uri: str, files: set[str]) -> tuple[list[str], int]:
    """Delete ``files`` (relative to the table) from the store: the ones removed and their bytes."""
    from deltalake.fs import DeltaStorageHandler
    from pyarrow import fs

    store = DeltaStorageHandler(uri, storage_options(lakehouse))
    removed, size = [], 0
    for info in store.get_file_info(sorted(files)):
        if info.type == fs.FileType.File:
            store.delete_file(info.path)
            removed.append(info.path)
            size += int(info.size or 0)
    return removed, size


def retain_tables(lakehouse: LakehouseRoot, days: int, tables: list[str] | None = None,
                  dry_run: bool = False, retention_hours: float = MIN_RETENTION_HOURS,
                  purge_now: bool = False) -> list[dict[str, Any]]:
    """Delete each table's rows older than ``days`` days, then the files that held them.

    One Delta delete per table, on its time column (``ts``): rows dated before now minus
    ``days`` days go, younger ones and rows without a date stay. A vacuum with
    ``retention_hours`` (at least ``MIN_RETENTION_HOURS``, so that it never deletes a file
    a running write is about to commit) then removes files tombstoned longer ago than that,
    which includes the files the previous run's delete left; ``purge_now`` also deletes the
    files this delete tombstoned, at once (safe while gateways write, see the module). The
    vacuum also removes files an optimize replaced, so time travel reaches back only
    ``retention_hours``.

    Args:
        lakehouse: the lakehouse root (a folder or an ``s3://`` URI).
        days: the retention in days, more than 0.
        tables: the tables to act on; default every table that exists. A table without a
            time column is reported (``skipped``) and left alone.
        dry_run: count the rows that would go; change nothing.
        retention_hours: the vacuum's retention.
        purge_now: delete the files this run tombstones without waiting for the retention.

    Returns:
        One dict per table: ``table``, ``column``, ``cutoff`` (rows before it went),
        ``rows_deleted`` (with ``dry_run``, the rows that would go), ``files_rewritten`` (the
        files the delete tombstoned), ``files_removed`` (the paths deleted from the store,
        relative to the table), ``bytes_removed``, ``files_pending`` (tombstoned files left
        for a later run), ``dry_run``, and ``skipped`` (why, or None).

    Raises:
        LlmopsError: ``days`` is not more than 0, a table is unknown, or the retention is
            under the minimum; checked before anything changes.
    """
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise LlmopsError(f"the retention must be a whole number of days over 0, got {days!r}")
    if retention_hours < MIN_RETENTION_HOURS:
        raise LlmopsError(
            f"a vacuum retention of {retention_hours} hours could delete files a running "
            f"writer is about to commit; use at least {MIN_RETENTION_HOURS} hour(s) (purge_now "
            "removes the deleted rows' files at once, safely)")
    targets = _existing(lakehouse, tables)
    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    out = []
    for name, uri in targets:
        column = time_column(name)
        result: dict[str, Any] = {
            "table": name, "column": column, "cutoff": cutoff, "rows_deleted": 0,
            "files_rewritten": 0, "files_removed": [], "bytes_removed": 0, "files_pending": 0,
            "dry_run": dry_run, "skipped": None}
        out.append(result)
        if column is None:
            result["skipped"] = "it has no time column"
            continue
        try:
            if dry_run:
                result["rows_deleted"] = _older(_delta_table(lakehouse, uri), column, cutoff)
                continue
            rows, _, tombstoned = _delete(lakehouse, uri, column, cutoff)
            purged, size = _purge(lakehouse, uri, tombstoned) if purge_now else ([], 0)
        except LlmopsError:
            raise
        except Exception as exc:
            raise _failed(lakehouse, f"delete old rows of {name}", exc) from exc
        vacuumed = vacuum_tables(lakehouse, [name], retention_hours=retention_hours)[0]
        result.update(rows_deleted=rows, files_rewritten=len(tombstoned),
                      files_removed=purged + vacuumed["files"],
                      bytes_removed=size + vacuumed["bytes"],
                      files_pending=0 if purge_now else len(tombstoned))
    return out
