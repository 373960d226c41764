"""``llmops tables optimize|vacuum`` on a real Delta table with many small commits."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from deltalake import DeltaTable

from llmops.errors import LlmopsError
from llmops.lakehouse import append_rows, optimize_tables, read_table, table_path, vacuum_tables
from tests.conftest import run_cli
from tests.lakehouse.conftest import lakehouse

TABLE = "inference_log"


@pytest.fixture
def project(bare_project: Path) -> Path:
    return bare_project


def fill(project: Path, commits: int, tag: str = "r") -> list[str]:
    ids = []
    for i in range(commits):
        ids.append(f"{tag}-{i}")
        append_rows(lakehouse(project), TABLE,
                    [{"request_id": ids[-1], "ts": datetime.now(timezone.utc), "status": 200}])
    return ids


def files(project: Path) -> int:
    return len(DeltaTable(str(table_path(lakehouse(project), TABLE))).file_uris())


def ids(project: Path) -> list[str]:
    return sorted(read_table(lakehouse(project), TABLE)["request_id"])


def test_optimize_compacts_and_keeps_every_row(project: Path) -> None:
    written = fill(project, 12)
    assert files(project) == 12
    out = run_cli("tables", "optimize", cwd=project, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{TABLE}: 12 files (")
    assert "-> 1 files (" in out.stdout
    assert files(project) == 1
    assert ids(project) == sorted(written)


def test_vacuum_dry_run_lists_without_deleting(project: Path) -> None:
    fill(project, 5)
    optimize_tables(lakehouse(project))
    folder = table_path(lakehouse(project), TABLE)
    before = sorted(p.name for p in folder.glob("*.parquet"))
    assert len(before) == 6  # five replaced files are still on disk

    kept = run_cli("tables", "vacuum", "--dry-run", cwd=project, timeout=120)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.splitlines()[0] == f"{TABLE}: would delete 0 files (0 bytes)"  # 168 h

    out = run_cli("tables", "vacuum", "--table", TABLE, "--retention-hours", "0", "--force",
                  "--dry-run", cwd=project, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{TABLE}: would delete 5 files (")
    assert len(lines) == 6 and all(line.strip() in before for line in lines[1:])
    assert sorted(p.name for p in folder.glob("*.parquet")) == before

    result = vacuum_tables(lakehouse(project), [TABLE], retention_hours=0, force=True)
    assert len(result[0]["files"]) == 5 and result[0]["bytes"] > 0
    assert len(list(folder.glob("*.parquet"))) == 1
    assert len(ids(project)) == 5


def test_short_retention_and_unknown_table_are_refused(project: Path) -> None:
    fill(project, 2)
    out = run_cli("tables", "vacuum", "--retention-hours", "0.5", cwd=project, timeout=120)
    assert out.returncode == 1 and "error:" in out.stderr and "at least 1 hour" in out.stderr
    out = run_cli("tables", "optimize", "--table", "nope", cwd=project, timeout=120)
    assert out.returncode == 1
    assert "unknown table(s) nope" in out.stderr and "inference_log" in out.stderr
    with pytest.raises(LlmopsError):
        vacuum_tables(lakehouse(project), retention_hours=0)
    assert len(ids(project)) == 2


def test_optimize_while_another_writer_appends_loses_no_row(project: Path) -> None:
    written = fill(project, 10, "before")
    stop = threading.Event()
    appended: list[str] = []
    errors: list[BaseException] = []

    def writer() -> None:
        deadline = time.monotonic() + 120
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                appended.extend(fill(project, 1, f"during-{len(appended)}"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(3):
            optimize_tables(lakehouse(project))
        out = run_cli("tables", "optimize", cwd=project, timeout=120)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert out.returncode == 0, out.stderr
    assert not errors and not thread.is_alive()
    assert appended, "the writer never committed during the compactions"
    assert ids(project) == sorted(written + appended)
