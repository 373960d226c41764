"""A write-ahead log in front of the Delta tables: nothing acknowledged is lost, nothing twice.

Every row is appended to a local segment file (one ``write`` call, before the
client gets its answer), so it survives a ``kill -9`` of the gateway. A
background thread rotates the segment, appends its rows to the Delta table in
one commit, then deletes the file.

Exactly once is Delta's own mechanism, the application transaction: each
gateway instance is one ``app_id`` per table, each segment carries a version
in its name, and the commit of a segment records ``(app_id, version)`` in the
same atomic commit as its rows. Versions only grow, across restarts too: a run
starts above the table's transaction version, above any leftover segment and
above the clock's microseconds. At start-up leftover segments are replayed
oldest first; one whose version is not above the table's transaction version
was committed before the crash and is only deleted, however many other
commits happened since.

A line that cannot be decoded is never dropped silently: only a torn last
line (a write cut short by the crash, never acknowledged) is skipped; any
other is moved to ``<folder>/quarantine/<table>/<segment>``, logged and counted.

One process owns a log: ``start`` takes an exclusive lock on ``<folder>/LOCK`` before it
replays anything and holds it until ``close`` (or its death: the kernel drops it), so a
second gateway given the same folder refuses to start instead of replaying, and deleting, the
segments the first one is writing. A write the kernel cuts short (a full disk) fails the
request that made it; the torn line ends its segment and is never committed.

By default a row is in the kernel's page cache when the client is answered: a killed gateway
loses nothing, a power loss or kernel crash can lose the last seconds. ``fsync=True``
(``gateway.log_fsync``) syncs each row to disk first (``benchmarks/wal_fsync.py`` measures
what that costs).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmops.errors import LlmopsError
from llmops.faults import fault_point
from llmops.lakehouse import TABLES, TableAppender, check_row, open_table
from llmops.lakehouse.location import LakehouseRoot

__all__ = ["WalError", "WalInUseError", "WriteAheadLog"]

log = logging.getLogger(__name__)

_MARK = "llmops.wal_segment"
_SEGMENT = re.compile(r"^(\d{20})\.jsonl$")
# the format before application transactions: "<seq>-<run id>.jsonl", seq restarting per run
_LEGACY = re.compile(r"^\d{12}-[0-9a-f]+-\d+\.jsonl$")


def _encode(row: dict[str, Any]) -> bytes:
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    return (json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class _Unreadable(ValueError):
    """A line that is not a row; the message says why without quoting the line."""


class _Incomplete(_Unreadable):
    """Not UTF-8 or not JSON: what a write cut short leaves (a whole row always parses)."""


def _decode(table: str, line: bytes) -> dict[str, Any]:
    """The row a line holds, or ``_Unreadable``."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Incomplete("not UTF-8") from None
    except (ValueError, RecursionError):
        raise _Incomplete("not JSON") from None
    if not isinstance(row, dict):
        raise _Unreadable("not a JSON object")
    try:
        for name, kind in TABLES[table].items():
            if kind == "timestamp" and isinstance(row.get(name), str):
                row[name] = datetime.fromisoformat(row[name])
        check_row(table, row)
    except (ValueError, LlmopsError):
        raise _Unreadable(f"not a row of {table}") from None
    return row


def _version(segment: Path) -> int:
    match = _SEGMENT.match(segment.name)
    if not match:
        raise ValueError(f"not a segment name: {segment.name}")
    return int(match.group(1))


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class WalError(LlmopsError):
    """A row could not be made durable: the request that made it must not be acknowledged."""


class WalInUseError(WalError):
    """Another live process holds this write-ahead log."""


class WriteAheadLog:
    """Segment files per table under ``folder``, flushed into ``lakehouse`` tables.

    Health, for a readiness probe: ``failing_since`` (``time.monotonic()`` of the
    first failed flush of the current streak, None once a flush succeeds),
    ``flush_failures`` (total), ``last_error``, ``backlog_rows()`` and
    ``quarantined`` (lines moved to quarantine by this process).
    """

    def __init__(self, folder: Path, lakehouse: LakehouseRoot, tables: list[str], instance: str,
                 flush_interval_s: float = 1.0, batch_size: int = 512,
                 fsync: bool = False) -> None:
        self.folder = Path(folder)
        self.fsync = fsync  # each row on disk before the answer (survives a power loss)
        self.lakehouse = lakehouse
        self.tables = tables
        self.instance = instance
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self._lock = threading.Lock()  # guards the open segments and the row counts
        self._fds: dict[str, int] = {}
        self._current: dict[str, Path] = {}
        self._closed: list[Path] = []
        self._rows: dict[Path, int] = {}  # rows of each segment not yet committed
        self._next: dict[str, int] = {}  # the version of the next segment per table
        self._committed: dict[str, int] = {}  # the table's transaction version, once read
        self._appenders: dict[str, TableAppender] = {}  # the table state kept between commits
        self._pending = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self.committed_rows = 0
        self.quarantined = 0
        self.flush_failures = 0
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self._lock_fd: int | None = None

    def app_id(self, table: str) -> str:
        """The Delta application id under which this instance commits to ``table``."""
        return f"llmops-wal:{self.instance}:{table}"

    def backlog_rows(self) -> int:
        """Rows appended but not yet committed (open and closed segments)."""
        with self._lock:
            return sum(self._rows.values())

    # -- versions --------------------------------------------------------
    def _committed_version(self, table: str) -> int:
        """The highest segment version of this instance that ``table`` holds (0: none)."""
        if table not in self._committed:
            delta = open_table(self.lakehouse, table)
            version = delta.transaction_version(self.app_id(table)) if delta else None
            self._committed[table] = version or 0
        return self._committed[table]

    def _first_version(self, table: str) -> int:
        """Above everything committed or left over; the clock keeps it so if the table is down."""
        leftovers = [_version(p) for p in (self.folder / table).glob("*.jsonl")
                     if _SEGMENT.match(p.name)]
        try:
            committed = self._committed_version(table)
        except Exception:  # noqa: BLE001 - the clock alone is above any earlier run's versions
            committed = 0
        return max([committed, *leftovers, time.time_ns() // 1000]) + 1

    # -- writing ---------------------------------------------------------
    def _open(self, table: str) -> None:
        (self.folder / table).mkdir(parents=True, exist_ok=True)
        if table not in self._next:
            self._next[table] = self._first_version(table)
        version = self._next[table]
        self._next[table] = version + 1
        path = self.folder / table / f"{version:020d}.jsonl"
        self._current[table] = path
        self._rows[path] = 0
        self._fds[table] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self.fsync:  # the new file's name must survive a power loss too
            folder = os.open(self.folder / table, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    def append(self, table: str, row: dict[str, Any]) -> None:
        """Make ``row`` durable against a crash of this process (one ``write``), and, with
        ``fsync``, against a crash of the machine (``fdatasync`` before returning)."""
        data = _encode(row)
        with self._lock:
            if table not in self._fds:
                self._open(table)
            try:
                written = os.write(self._fds[table], data)
            except OSError as exc:  # nothing written (a full disk, a file size limit)
                raise WalError(f"the write-ahead log cannot write a {table} row in "
                               f"{self.folder} ({exc.strerror or exc}): the request is not "
                               "logged") from exc
            if written != len(data):
                # the torn line must be its segment's last: end the segment here
                os.close(self._fds.pop(table))
                self._closed.append(self._current.pop(table))
                raise WalError(f"the write-ahead log wrote {written} of {len(data)} bytes of "
                               f"a {table} row in {self.folder} (is the disk full?): the "
                               "request is not logged")
            if self.fsync:
                try:
                    os.fdatasync(self._fds[table])
                except OSError as exc:
                    os.close(self._fds.pop(table))
                    self._closed.append(self._current.pop(table))
                    raise WalError(f"the write-ahead log cannot sync a {table} row to disk in "
                                   f"{self.folder} ({exc.strerror or exc}): the request is not "
                                   "logged") from exc
            self._rows[self._current[table]] += 1
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

    def _read_segment(self, table: str, seg: Path) -> list[dict[str, Any]]:
        """The rows of a segment; undecodable lines go to quarantine before anything commits."""
        lines = seg.read_bytes().split(b"\n")
        tail = lines.pop()  # empty unless the last write was cut short
        rows, bad = [], []
        for number, line in enumerate(lines, 1):
            try:
                rows.append(_decode(table, line))
            except _Unreadable as exc:
                bad.append((number, str(exc), line))
        if tail:
            try:
                rows.append(_decode(table, tail))  # whole, only its newline missing
            except _Incomplete:
                log.info("WAL %s/%s: skipped a torn last line (never acknowledged)",
                         table, seg.name)
            except _Unreadable as exc:
                bad.append((len(lines) + 1, str(exc), tail))
        target = self.folder / "quarantine" / table / seg.name
        # A segment never changes once closed: a retry or a replay after a crash finds
        # its quarantine file already complete, and neither counts nor logs it twice.
        if bad and not target.exists():
            for number, reason, _ in bad:
                log.warning("WAL %s/%s line %d is %s: moved to %s",
                            table, seg.name, number, reason, target)
            _write_atomically(target, b"".join(line + b"\n" for _, _, line in bad))
            self.quarantined += len(bad)
        return rows

    def _commit_segment(self, table: str, seg: Path) -> None:
        version = _version(seg)
        if version > self._committed_version(table) and seg.exists():
            rows = self._read_segment(table, seg)
            if rows:
                appender = self._appenders.setdefault(table,
                                                      TableAppender(self.lakehouse, table))
                appender.append(rows, commit_metadata={_MARK: f"{self.instance}/{table}/{seg.name}"},
                                app_transaction=(self.app_id(table), version))
                self._committed[table] = version
                self.committed_rows += len(rows)
            fault_point("wal_committed")
        seg.unlink(missing_ok=True)
        with self._lock:
            self._closed.remove(seg)
            self._rows.pop(seg, None)

    def _commit_closed(self) -> None:
        """Commit every closed segment, oldest first per table.

        A failure stops that table (a later version must never land before an
        earlier one) and is raised once the other tables had their turn.
        """
        error: Exception | None = None
        by_table: dict[str, list[Path]] = {}
        for seg in sorted(self._closed, key=_version):
            by_table.setdefault(seg.parent.name, []).append(seg)
        for table, segments in by_table.items():
            try:
                for seg in segments:
                    self._commit_segment(table, seg)
            except Exception as exc:  # noqa: BLE001 - raised below, after the other tables
                self._committed.pop(table, None)  # did it land? read the table next time
                error = error or exc
        if error is not None:
            raise error

    def flush(self) -> int:
        """Rotate and commit everything written so far; returns the rows committed."""
        with self._flush_lock:
            before = self.committed_rows
            self._rotate()
            try:
                self._commit_closed()
            except Exception as exc:
                self.flush_failures += 1
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                log.warning("WAL flush to %s failed (%d rows waiting, failure %d): %s",
                            self.lakehouse, self.backlog_rows(), self.flush_failures,
                            self.last_error)
                raise
            self.failing_since = None
            self.last_error = None
            return self.committed_rows - before

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                if self._pending or self._closed:
                    self.flush()
            except Exception:  # noqa: BLE001 - logged by flush; keep serving, segments stay
                time.sleep(min(self.flush_interval_s, 1.0))

    def _adopt_legacy(self, table: str, seg: Path) -> Path | None:
        """A segment of the previous format: deleted if its commit tag is in recent history,
        else renamed to a fresh version (for a crash during the upgrade)."""
        delta = open_table(self.lakehouse, table)
        if delta is not None:
            mark = f"{self.instance}/{table}/{seg.stem}"
            if any(e.get(_MARK) == mark for e in delta.history(limit=1000)):
                seg.unlink()
                return None
        if table not in self._next:
            self._next[table] = self._first_version(table)
        target = seg.with_name(f"{self._next[table]:020d}.jsonl")
        self._next[table] += 1
        seg.rename(target)
        return target

    def start(self) -> int:
        """Replay what a previous run left behind, then flush in the background.

        Returns the rows replayed. A replay that fails is logged and retried by
        the background thread (see ``failing_since``); the gateway still starts.
        Raises :class:`WalInUseError` when another process holds the log.
        """
        self.lock()
        for table in self.tables:
            for found in sorted((self.folder / table).glob("*.jsonl")):
                seg: Path | None = found
                if _LEGACY.match(found.name):
                    try:
                        seg = self._adopt_legacy(table, found)
                    except Exception as exc:  # noqa: BLE001 - kept for the next start
                        log.warning("WAL %s/%s left in place: %s", table, found.name, exc)
                        continue
                if seg is None:
                    continue
                if not _SEGMENT.match(seg.name):
                    log.warning("WAL %s/%s is not a segment: left in place", table, seg.name)
                    continue
                data = seg.read_bytes()
                with self._lock:
                    self._closed.append(seg)
                    self._rows[seg] = data.count(b"\n") + (not data.endswith(b"\n") and bool(data))
            if table not in self._next:
                self._next[table] = self._first_version(table)
        try:
            replayed = self.flush()
        except Exception:  # noqa: BLE001 - logged by flush; the thread retries
            replayed = 0
        self._thread = threading.Thread(target=self._run, name="wal-flush", daemon=True)
        self._thread.start()
        return replayed

    def lock(self) -> None:
        """Take this log for this process (``start`` does); :class:`WalInUseError` when another
        process holds it. A caller that has more to start first (an engine) takes it early."""
        if self._lock_fd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WalInUseError(
                f"the write-ahead log {self.folder} is in use by {holder}: two gateways "
                "cannot share one; give this one another gateway.instance (or port)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=30)
        try:
            self.flush()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the lock
                self._lock_fd = None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
