"""``llmops tables retain``: old rows deleted from real Delta tables, and their files with them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from llmops.errors import LlmopsError
from llmops.lakehouse import TABLES, append_rows, read_table, retain_tables, table_path
from tests.conftest import run_cli
from tests.lakehouse.conftest import lakehouse

NOW = datetime.now(timezone.utc)


@pytest.fixture
def project(bare_project: Path) -> Path:
    return bare_project


def fill(lake: Path | str) -> None:
    """Old and young requests, in commits of their own and one commit holding both, and
    feedback on two of them."""
    for rid, age in (("old-40", 40), ("old-31", 31), ("young-29", 29), ("young-0", 0)):
        append_rows(lake, "inference_log", [{"request_id": rid, "ts": NOW - timedelta(days=age),
                                             "status": 200, "prompt": f"secret of {rid}"}])
    append_rows(lake, "inference_log", [
        {"request_id": "mixed-old", "ts": NOW - timedelta(days=90), "status": 200,
         "prompt": "secret of mixed-old"},
        {"request_id": "mixed-young", "ts": NOW - timedelta(hours=1), "status": 200},
        {"request_id": "undated", "ts": None, "status": 200},
    ])
    append_rows(lake, "feedback", [
        {"feedback_id": "f-old", "request_id": "old-40", "ts": NOW - timedelta(days=39),
         "rating": 1},
        {"feedback_id": "f-young", "request_id": "young-0", "ts": NOW, "rating": -1},
    ])


YOUNG = ["mixed-young", "undated", "young-0", "young-29"]


def ids(lake: Path | str, table: str = "inference_log") -> list[str]:
    return sorted(read_table(lake, table)["request_id"])


def on_disk(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.parquet")}


def prompts_on_disk(folder: Path) -> set[str]:
    """Every prompt any data file in the folder still holds, referenced by the table or not."""
    return {p for f in folder.glob("*.parquet")
            for p in pq.read_table(f, columns=["prompt"]).column("prompt").to_pylist() if p}


def test_purge_now_deletes_old_rows_and_the_files_that_held_them(project: Path) -> None:
    lake = lakehouse(project)
    fill(lake)
    folder = table_path(lake, "inference_log")
    before = on_disk(folder)
    started = datetime.now(timezone.utc)
    results = {r["table"]: r for r in retain_tables(lake, 30, purge_now=True)}
    ended = datetime.now(timezone.utc)

    log = results["inference_log"]
    assert log["rows_deleted"] == 3 and log["column"] == "ts" and log["skipped"] is None
    # the cut-off is 30 days before the run (the module's NOW may be minutes older in a suite)
    assert started - timedelta(days=30) <= log["cutoff"] <= ended - timedelta(days=30)
    assert ids(lake) == YOUNG  # rows without a date are kept
    # the two old files and the mixed one were replaced by one file holding the young row
    assert log["files_rewritten"] == 3 and len(log["files_removed"]) == 3
    assert log["bytes_removed"] > 0 and log["files_pending"] == 0
    assert set(log["files_removed"]) <= before
    assert not set(log["files_removed"]) & on_disk(folder)
    # the old prompts are physically gone: no file left in the folder holds them
    assert prompts_on_disk(folder) == {"secret of young-29", "secret of young-0"}
    assert results["feedback"]["rows_deleted"] == 1
    assert sorted(read_table(lake, "feedback")["feedback_id"]) == ["f-young"]

    again = retain_tables(lake, 30, purge_now=True)
    assert [(r["rows_deleted"], r["files_removed"]) for r in again] == [(0, []), (0, [])]


def test_by_default_the_replaced_files_wait_for_the_vacuum_retention(project: Path) -> None:
    lake = lakehouse(project)
    fill(lake)
    folder = table_path(lake, "inference_log")
    before = on_disk(folder)
    (log,) = retain_tables(lake, 30, ["inference_log"])
    assert log["rows_deleted"] == 3 and ids(lake) == YOUNG
    # a vacuum shorter than an hour could delete a running write's file: these stay for now
    assert log["files_pending"] == 3 and log["files_removed"] == []
    assert before <= on_disk(folder)
    assert ids(lake, "feedback") == ["old-40", "young-0"]  # a table not named is untouched


def test_dry_run_counts_and_changes_nothing(project: Path) -> None:
    lake = lakehouse(project)
    fill(lake)
    folder = table_path(lake, "inference_log")
    before, version = on_disk(folder), DeltaTable(str(folder)).version()
    out = run_cli("tables", "retain", "--days", "30", "--dry-run", cwd=project)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("inference_log: would delete 3 rows with ts before ")
    assert lines[1].startswith("feedback: would delete 1 rows with ts before ")
    assert on_disk(folder) == before and DeltaTable(str(folder)).version() == version
    assert len(ids(lake)) == 7


def test_bad_input_is_refused_and_changes_nothing(project: Path) -> None:
    lake = lakehouse(project)
    fill(lake)
    folder = table_path(lake, "inference_log")
    version = DeltaTable(str(folder)).version()
    for days in (0, -3):
        with pytest.raises(LlmopsError, match="days over 0"):
            retain_tables(lake, days)
    with pytest.raises(LlmopsError, match="unknown table.*nope.*inference_log"):
        retain_tables(lake, 30, ["inference_log", "nope"])
    with pytest.raises(LlmopsError, match="at least 1 hour"):
        retain_tables(lake, 30, retention_hours=0)
    bad = run_cli("tables", "retain", "--days", "0", cwd=project)
    assert bad.returncode == 2 and "--days" in bad.stderr
    unknown = run_cli("tables", "retain", "--days", "30", "--table", "nope", cwd=project)
    assert unknown.returncode != 0 and "unknown table(s) nope" in unknown.stderr
    none = run_cli("tables", "retain", cwd=project)  # no --days and no retention_days
    assert none.returncode == 2 and "retention_days" in none.stderr
    assert DeltaTable(str(folder)).version() == version and len(ids(lake)) == 7


def test_the_environment_retention_is_the_default(project: Path) -> None:
    (project / "llmops.yaml").write_text("project: t\nenvs:\n  dev:\n    retention_days: 30\n")
    lake = lakehouse(project)
    fill(lake)
    out = run_cli("tables", "retain", "--purge-now", cwd=project)
    assert out.returncode == 0, out.stderr
    log, feedback = out.stdout.splitlines()
    assert log.startswith("inference_log: deleted 3 rows with ts before ")
    assert re.search(r"; removed 3 files \(\d+ bytes\)$", log)
    assert feedback.startswith("feedback: deleted 1 rows with ts before ")
    assert ids(lake) == YOUNG
    # --days wins over the setting; without --purge-now the output says when the files go
    out = run_cli("tables", "retain", "--days", "1", "--table", "inference_log", cwd=project)
    assert out.returncode == 0, out.stderr
    assert "deleted 1 rows" in out.stdout and "go at the next run after an hour" in out.stdout
    assert ids(lake) == ["mixed-young", "undated", "young-0"]


def test_a_table_without_a_time_column_is_skipped(project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TABLES, "notes", {"id": "string"})
    lake = lakehouse(project)
    append_rows(lake, "notes", [{"id": "n1"}])
    (notes,) = retain_tables(lake, 1, ["notes"])
    assert notes["skipped"] == "it has no time column" and notes["rows_deleted"] == 0
    assert list(read_table(lake, "notes")["id"]) == ["n1"]


def test_retain_on_s3(s3_env: str) -> None:
    from deltalake.fs import DeltaStorageHandler
    from pyarrow import fs

    from llmops.lakehouse.location import storage_options, table_uri

    fill(s3_env)
    (log,) = retain_tables(s3_env, 30, ["inference_log"], purge_now=True)
    assert log["rows_deleted"] == 3 and len(log["files_removed"]) == 3 and ids(s3_env) == YOUNG
    store = DeltaStorageHandler(table_uri(s3_env, "inference_log"), storage_options(s3_env))
    left = [i.type for i in store.get_file_info(log["files_removed"])]
    assert left == [fs.FileType.NotFound] * 3
