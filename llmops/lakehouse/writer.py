"""Append rows to, and read, the Delta tables of an environment's lakehouse."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.errors import LlmopsError, MissingExtraError
from llmops.lakehouse.tables import TABLES, schema

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["append_rows", "read_table", "table_path"]


def table_path(lakehouse: Path, table: str) -> Path:
    schema(table)  # validates the name
    return Path(lakehouse) / table


def _check_row(table: str, row: dict[str, Any]) -> None:
    columns = TABLES[table]
    unknown = set(row) - set(columns)
    if unknown:
        raise LlmopsError(f"{table}: unknown column(s) {', '.join(sorted(unknown))}")
    for name, kind in columns.items():
        value = row.get(name)
        if value is None:
            continue
        ok = {
            "string": isinstance(value, str),
            "int32": isinstance(value, int) and not isinstance(value, bool),
            "int64": isinstance(value, int) and not isinstance(value, bool),
            "float64": isinstance(value, (int, float)) and not isinstance(value, bool),
            "timestamp": isinstance(value, datetime) and value.tzinfo is not None,
        }[kind]
        if not ok:
            raise LlmopsError(f"{table}.{name}: expected {kind}, got {type(value).__name__}")


def append_rows(
    lakehouse: Path, table: str, rows: list[dict[str, Any]],
    commit_metadata: dict[str, str] | None = None,
) -> int:
    """Append ``rows`` to ``table`` in one Delta commit (all or nothing); returns the row count.

    Every row is checked against the table's schema before anything is written.
    ``commit_metadata`` is stored in the commit's info (read back with ``history()``).
    Concurrent appends from several processes are safe: Delta retries on conflict.
    """
    try:
        import pyarrow as pa
        from deltalake import CommitProperties, write_deltalake
    except ImportError as exc:
        raise MissingExtraError(exc.name or "deltalake", "index") from exc
    if not rows:
        return 0
    for row in rows:
        _check_row(table, row)
    sch = schema(table)
    data = pa.Table.from_pylist(
        [{name: row.get(name) for name in sch.names} for row in rows], schema=sch
    )
    path = table_path(lakehouse, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    props = CommitProperties(custom_metadata=commit_metadata) if commit_metadata else None
    # "merge": a table written before a column was added gains it (older rows read null)
    write_deltalake(str(path), data, mode="append", schema_mode="merge",
                    commit_properties=props)
    return len(rows)


def read_table(lakehouse: Path, table: str) -> pd.DataFrame:
    """The whole table as a DataFrame (empty, with the right columns, if never written)."""
    import pandas as pd

    path = table_path(lakehouse, table)
    if not (path / "_delta_log").is_dir():
        return pd.DataFrame({name: pd.Series(dtype="object") for name in TABLES[table]})
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pandas()
