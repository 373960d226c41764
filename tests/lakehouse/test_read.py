"""Readers take only the columns, the time window and the requests they need."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from llmops.errors import LlmopsError
from llmops.lakehouse import append_rows, read_table

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_columns_window_and_ids_are_pushed_down(tmp_path: Path) -> None:
    for day in range(4):  # one file per day: the window skips whole files
        append_rows(tmp_path, "inference_log", [
            {"request_id": f"d{day}-{i}", "ts": T0 + timedelta(days=day, minutes=i),
             "status": 200, "latency_ms": float(i), "response": "x" * 100} for i in range(3)])
    window = read_table(tmp_path, "inference_log", columns=["request_id", "ts"],
                        since=T0 + timedelta(days=1), until=T0 + timedelta(days=3))
    assert list(window.columns) == ["request_id", "ts"]
    assert sorted(window["request_id"]) == [f"d{d}-{i}" for d in (1, 2) for i in range(3)]
    picked = read_table(tmp_path, "inference_log", columns=["request_id", "status"],
                        request_ids=["d0-1", "d3-2", "missing"])
    assert sorted(picked["request_id"]) == ["d0-1", "d3-2"]
    assert picked["status"].tolist() == [200, 200]
    with pytest.raises(LlmopsError, match="unknown column"):
        read_table(tmp_path, "inference_log", columns=["nope"])


def test_a_column_added_after_the_table_was_written_reads_as_null(tmp_path: Path) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    # a table written before index_version existed
    old = pa.table({"request_id": ["a", "b"], "status": pa.array([200, 500], pa.int32())})
    write_deltalake(str(tmp_path / "inference_log"), old)
    rows = read_table(tmp_path, "inference_log", columns=["request_id", "index_version"])
    assert rows["request_id"].tolist() == ["a", "b"] and rows["index_version"].isna().all()


def test_a_table_never_written_reads_empty_with_the_asked_columns(tmp_path: Path) -> None:
    empty = read_table(tmp_path, "feedback", columns=["request_id", "rating"],
                       since=T0)
    assert list(empty.columns) == ["request_id", "rating"] and len(empty) == 0
