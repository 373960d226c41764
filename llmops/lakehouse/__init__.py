"""Lakehouse tables (Delta Lake, in a folder or on S3): the inference log, feedback, eval results,
index runs, monitoring and rollouts."""

from __future__ import annotations

from llmops.lakehouse.location import LakehouseError, is_remote, open_table, table_exists
from llmops.lakehouse.locks import LakehouseLockTimeout, lakehouse_lock
from llmops.lakehouse.maintenance import optimize_tables, vacuum_tables
from llmops.lakehouse.retention import retain_tables
from llmops.lakehouse.rows import inference_row, name_and_version
from llmops.lakehouse.tables import TABLES, schema
from llmops.lakehouse.writer import (
    TableAppender,
    TableChanged,
    append_rows,
    check_row,
    read_table,
    table_path,
)

__all__ = [
    "TABLES", "LakehouseError", "LakehouseLockTimeout", "TableAppender", "TableChanged",
    "append_rows", "check_row", "inference_row", "is_remote", "lakehouse_lock",
    "name_and_version", "open_table", "optimize_tables", "read_table", "retain_tables", "schema",
    "table_exists", "table_path", "vacuum_tables",
]
