"""Lakehouse tables (Delta Lake): the inference log, feedback, eval results and index runs."""

from __future__ import annotations

from llmops.lakehouse.locks import LakehouseLockTimeout, lakehouse_lock
from llmops.lakehouse.maintenance import optimize_tables, vacuum_tables
from llmops.lakehouse.rows import inference_row, name_and_version
from llmops.lakehouse.tables import TABLES, schema
from llmops.lakehouse.writer import (
    TableAppender,
    append_rows,
    check_row,
    read_table,
    table_path,
)

__all__ = [
    "TABLES", "LakehouseLockTimeout", "TableAppender", "append_rows", "check_row", "inference_row",
    "lakehouse_lock", "name_and_version", "optimize_tables", "read_table", "schema", "table_path",
    "vacuum_tables",
]
