"""A write-ahead log in front of the Delta tables: nothing acknowledged is lost, nothing twice.

Every row is appended to a local segment file (one ``write`` call, before the
client gets its answer), so it survives a ``kill -9`` of the gateway. A
background thread rotates the segment, appends its rows to the Delta table in
one commit tagged with the segment's name, then deletes the file. At start-up
leftover segments are replayed; a segment whose tag is already in the table's
history was committed before the crash and is only deleted: exactly once.
The segment files never hold more than the rows of the last flush interval.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmops.faults import fault_point
from llmops.lakehouse import append_rows, table_path

__all__ = ["WriteAheadLog"]

_MARK = "llmops.wal_segment"


def _encode(row: dict[str, Any]) -> bytes:
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    return (json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _decode(line: bytes) -> dict[str, Any]:
    row = json.loads(line)
    if isinstance(row.get("ts"), str):
        row["ts"] = datetime.fromisoformat(row["ts"])
    return row


class WriteAheadLog:
    """Segment files per table under ``folder``, flushed into ``lakehouse`` tables."""

    def __init__(self, folder: Path, lakehouse: Path, tables: list[str], instance: str,
                 flush_interval_s: float = 1.0, batch_size: int = 512) -> None:
        self.folder = Path(folder)
        self.lakehouse = Path(lakehouse)
        self.tables = tables
        self.instance = instance
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._pending = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.committed_rows = 0
        self.last_error: str | None = None
        self._run_id = f"{time.time_ns():x}-{os.getpid()}"
        self._current: dict[str, Path] = {}
        self._closed: list[Path] = []
        self._flush_lock = threading.Lock()

    # -- writing ---------------------------------------------------------
    def _segment(self, table: str, seq: int) -> Path:
        # The run id makes every segment name unique across restarts: a name is
        # also the commit tag, and a new run must never reuse a committed one.
        return self.folder / table / f"{seq:012d}-{self._run_id}.jsonl"

    def _open(self, table: str) -> None:
        (self.folder / table).mkdir(parents=True, exist_ok=True)
        seq = self._seq.get(table, 0) + 1
        self._seq[table] = seq
        self._current[table] = self._segment(table, seq)
        self._fds[table] = os.open(self._current[table], os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                   0o600)

    def append(self, table: str, row: dict[str, Any]) -> None:
        """Make ``row`` durable against a crash of this process (one ``write``)."""
        data = _encode(row)
        with self._lock:
            if table not in self._fds:
                self._open(table)
            os.write(self._fds[table], data)
            self._pending += 1
            if self._pending >= self.batch_size:
                self._wake.set()

    # -- flushing --------------------------------------------------------
    def _rotate(self) -> None:
        """Close the open segments; only closed segments are ever committed or deleted."""
        with self._lock:
            self._pending = 0
            for table in list(self._fds):
                os.close(self._fds.pop(table))
                self._closed.append(self._current.pop(table))

    def _committed_marks(self, table: str) -> set[str]:
        path = table_path(self.lakehouse, table)
        if not (path / "_delta_log").is_dir():
            return set()
        from deltalake import DeltaTable

        marks = set()
        for entry in DeltaTable(str(path)).history(limit=1000):
            mark = entry.get(_MARK)
            if mark:
                marks.add(str(mark))
        return marks

    def _commit_closed(self) -> int:
        """Commit every closed segment, oldest first; a failure leaves the rest for next time."""
        rows_done = 0
        marks: dict[str, set[str]] = {}
        for seg in sorted(self._closed, key=lambda p: (p.parent.name, p.name)):
            table = seg.parent.name
            if table not in marks:
                marks[table] = self._committed_marks(table)
            mark = f"{self.instance}/{table}/{seg.stem}"
            if mark not in marks[table] and seg.exists():
                rows = []
                for line in seg.read_bytes().splitlines():
                    try:
                        rows.append(_decode(line))
                    except (ValueError, TypeError):
                        continue  # a torn last line was never acknowledged
                if rows:
                    append_rows(self.lakehouse, table, rows, commit_metadata={_MARK: mark})
                    rows_done += len(rows)
                fault_point("wal_committed")
            seg.unlink(missing_ok=True)
            self._closed.remove(seg)
        return rows_done

    def flush(self) -> int:
        """Rotate and commit everything written so far; returns the rows committed."""
        with self._flush_lock:
            self._rotate()
            done = self._commit_closed()
            self.committed_rows += done
            return done

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                if self._pending or self._closed:
                    self.flush()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep serving; segments stay for next flush
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                time.sleep(min(self.flush_interval_s, 1.0))

    def start(self) -> int:
        """Replay what a previous run left behind, then flush in the background."""
        self._closed = sorted(p for t in self.tables for p in (self.folder / t).glob("*.jsonl"))
        with self._flush_lock:
            replayed = self._commit_closed()
        self.committed_rows += replayed
        self._thread = threading.Thread(target=self._run, name="wal-flush", daemon=True)
        self._thread.start()
        return replayed

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=30)
        self.flush()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
