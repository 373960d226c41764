"""Lakehouse tables (Delta Lake): the inference log, feedback, eval results and index runs."""

from __future__ import annotations

from llmops.lakehouse.tables import TABLES, schema
from llmops.lakehouse.writer import append_rows, check_row, read_table, table_path

__all__ = ["TABLES", "append_rows", "check_row", "read_table", "schema", "table_path"]
