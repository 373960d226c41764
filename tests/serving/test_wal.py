"""The write-ahead log against a real Delta table: exactly once, quarantine, health."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops.lakehouse import append_rows, read_table, schema, table_path
from llmops.serving.wal import WriteAheadLog, utcnow

TABLE = "inference_log"
INSTANCE = "gw-test"

CHILD = """
import sys
from pathlib import Path
from llmops.serving.wal import WriteAheadLog, utcnow
wal = WriteAheadLog(Path(sys.argv[1]), Path(sys.argv[2]), ["inference_log"], "gw-test",
                    flush_interval_s=3600)
wal.start()
for i in range(int(sys.argv[3])):
    wal.append("inference_log", {"request_id": f"acked-{i}", "ts": utcnow(), "status": 200})
    print(f"acked-{i}", flush=True)  # append returned: the gateway would answer now
wal.flush()  # LLMOPS_FAULT_KILL_AT=wal_committed: SIGKILL after the commit, before the delete
print("flushed", flush=True)
"""


def new_wal(tmp_path: Path) -> WriteAheadLog:
    # no background flushes: the tests flush when they mean to
    return WriteAheadLog(tmp_path / "wal", tmp_path / "lakehouse", [TABLE, "feedback"], INSTANCE,
                         flush_interval_s=3600)


def row(request_id: str) -> dict:
    return {"request_id": request_id, "ts": utcnow(), "status": 200}


def logged(tmp_path: Path) -> list[str]:
    return read_table(tmp_path / "lakehouse", TABLE)["request_id"].tolist()


def segments(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "wal" / TABLE).glob("*.jsonl"))


def segment_version(path: Path) -> int:
    return int(path.name.removesuffix(".jsonl"))


def plant(tmp_path: Path, version: int, content: bytes) -> Path:
    """A segment a crashed run left behind."""
    path = tmp_path / "wal" / TABLE / f"{version:020d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def line(request_id: str) -> bytes:
    return (json.dumps({"request_id": request_id, "ts": utcnow().isoformat(), "status": 200})
            + "\n").encode()


def test_kill_between_commit_and_delete_then_1001_commits_is_exactly_once(tmp_path: Path) -> None:
    env = {**os.environ, "LLMOPS_FAULT_KILL_AT": "wal_committed"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "wal"), str(tmp_path / "lakehouse"), "25"],
        capture_output=True, text=True, env=env, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    acked = child.stdout.split()
    assert len(acked) == 25 and "flushed" not in acked
    assert sorted(logged(tmp_path)) == sorted(acked)  # committed ...
    (left,) = segments(tmp_path)  # ... and the segment still there

    # Far more other commits than the old history scan looked at (1,000): mostly empty
    # appends (a commit costs the same with or without rows, and files would slow it down).
    path = table_path(tmp_path / "lakehouse", TABLE)
    dt = DeltaTable(str(path))
    others = []
    started = time.monotonic()
    for i in range(1001):
        rows = [row(f"other-{i}")] if i % 100 == 0 else []
        others += [r["request_id"] for r in rows]
        write_deltalake(dt, pa.Table.from_pylist(rows, schema=schema(TABLE)), mode="append")
        assert time.monotonic() - started < 300, f"only {i} commits in 300 s"
    assert DeltaTable(str(path)).version() == 1001

    wal = new_wal(tmp_path)
    assert wal.start() == 0  # replayed nothing: the table already holds the segment
    assert not left.exists()
    rows = logged(tmp_path)
    assert sorted(rows) == sorted(acked + others), "a row lost or logged twice"

    wal.append(TABLE, row("after-restart"))  # the new run's versions are above the old one's
    (new,) = segments(tmp_path)
    assert segment_version(new) > segment_version(left)
    wal.close()
    assert logged(tmp_path).count("after-restart") == 1 and not segments(tmp_path)


def test_garbled_middle_line_is_quarantined_and_torn_tail_skipped(tmp_path: Path,
                                                                  caplog) -> None:
    garbled = b'{"request_id": "secret-cont\xff\xfeents", "sta'
    seg = plant(tmp_path, 1, line("r-1") + garbled + b"\n" + line("r-2") + b'{"request_id": "r-')
    wal = new_wal(tmp_path)
    with caplog.at_level(logging.WARNING, logger="llmops.serving.wal"):
        assert wal.start() == 2
    wal.close()
    assert sorted(logged(tmp_path)) == ["r-1", "r-2"]
    assert wal.quarantined == 1
    assert (tmp_path / "wal" / "quarantine" / TABLE / seg.name).read_bytes() == garbled + b"\n"
    assert not seg.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(seg.name in m and "line 2" in m for m in warnings), warnings
    assert not any("secret" in m for m in caplog.messages), "row contents in the log"


def test_a_valid_row_the_table_cannot_take_is_quarantined_not_blocking(tmp_path: Path) -> None:
    bad = [
        {"request_id": "x", "no_such_column": 1},
        {"request_id": "x", "status": 2**40},  # int32 overflow
        {"request_id": "x", "ts": "2024-01-01T00:00:00"},  # no time zone
        ["not", "an", "object"],
    ]
    content = line("ok-1") + b"".join(json.dumps(b).encode() + b"\n" for b in bad) + line("ok-2")
    # whole JSON without its newline is not torn (a cut-short write never parses): quarantined
    plant(tmp_path, 1, content + json.dumps(bad[0]).encode())
    wal = new_wal(tmp_path)
    assert wal.start() == 2
    wal.close()
    assert sorted(logged(tmp_path)) == ["ok-1", "ok-2"] and wal.quarantined == len(bad) + 1


def test_a_retried_segment_is_quarantined_once(tmp_path: Path, caplog) -> None:
    (tmp_path / "lakehouse").mkdir()
    blocker = table_path(tmp_path / "lakehouse", TABLE)
    blocker.write_text("not a table")
    seg = plant(tmp_path, 1, line("r-1") + b"garbage\n")
    wal = new_wal(tmp_path)
    with caplog.at_level(logging.WARNING, logger="llmops.serving.wal"):
        assert wal.start() == 0 and wal.flush_failures == 1  # the replay failed; it started
        blocker.unlink()
        assert wal.flush() == 1
    wal.close()
    assert wal.quarantined == 1 and not seg.exists() and logged(tmp_path) == ["r-1"]
    assert len([m for m in caplog.messages if "moved to" in m]) == 1


def _replay(content: bytes) -> tuple[int, int, int]:
    """Replay one segment in a fresh folder: (rows committed, lines quarantined, lines)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seg = plant(root, 7, content)
        wal = new_wal(root)
        wal.start()
        wal.close()
        assert not seg.exists()
        committed = len(logged(root))
        assert committed == wal.committed_rows
        quarantine = root / "wal" / "quarantine" / TABLE / seg.name
        kept = quarantine.read_bytes().split(b"\n")[:-1] if quarantine.exists() else []
        assert len(kept) == wal.quarantined
        parts = content.split(b"\n")
        assert all(x in parts for x in kept)  # whole lines, as written
        return committed, len(kept), len(parts) - 1 + bool(parts[-1])


_no_newline = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b""))
_good = st.builds(lambda rid, status: line(rid).rstrip(b"\n")
                  if status is None else json.dumps({"request_id": rid, "status": status}).encode(),
                  st.text(max_size=12), st.one_of(st.none(), st.integers(-2**31, 2**31 - 1)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_any_bytes_never_crash_replay(content: bytes) -> None:
    committed, quarantined, lines = _replay(content)
    torn = lines - committed - quarantined  # only an unterminated last line may be skipped
    assert torn in ((0, 1) if not content.endswith(b"\n") else (0,))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), _good, _no_newline), max_size=8), _no_newline)
def test_good_lines_commit_bad_lines_quarantine_nothing_lost(items, tail: bytes) -> None:
    body = [good if keep else junk for keep, good, junk in items]
    content = b"".join(x + b"\n" for x in body) + tail
    committed, quarantined, lines = _replay(content)
    assert lines == len(body) + bool(tail)
    assert committed >= sum(keep for keep, _, _ in items)  # every good line landed
    assert lines - committed - quarantined in ((0, 1) if tail else (0,))


def test_versions_grow_across_restarts(tmp_path: Path) -> None:
    first = new_wal(tmp_path)
    first.start()
    first.append(TABLE, row("run-1"))
    (seg1,) = segments(tmp_path)
    first.close()
    # a crash left a segment numbered above this clock: the next run must still go above it
    leftover = plant(tmp_path, segment_version(seg1) + 10**12, line("left-over"))

    second = new_wal(tmp_path)
    assert second.start() == 1
    second.append(TABLE, row("run-2"))
    (seg2,) = segments(tmp_path)
    assert segment_version(seg1) < segment_version(leftover) < segment_version(seg2)
    second.close()
    assert sorted(logged(tmp_path)) == ["left-over", "run-1", "run-2"]
    path = table_path(tmp_path / "lakehouse", TABLE)
    assert DeltaTable(str(path)).transaction_version(second.app_id(TABLE)) == segment_version(seg2)


def test_replayed_segment_after_a_foreign_commit_with_another_instance(tmp_path: Path) -> None:
    """Another instance's transactions on the same table do not hide this one's segments."""
    append_rows(tmp_path / "lakehouse", TABLE, [row("other-gw")],
                app_transaction=(f"llmops-wal:gw-other:{TABLE}", 2**62))
    plant(tmp_path, 5, line("mine"))
    wal = new_wal(tmp_path)
    assert wal.start() == 1
    wal.close()
    assert sorted(logged(tmp_path)) == ["mine", "other-gw"]


def test_legacy_segments_are_committed_once(tmp_path: Path) -> None:
    folder = tmp_path / "wal" / TABLE
    folder.mkdir(parents=True)
    done = folder / "000000000001-18f3a-123.jsonl"
    done.write_bytes(line("legacy-done"))
    append_rows(tmp_path / "lakehouse", TABLE, [row("legacy-done")],
                commit_metadata={"llmops.wal_segment": f"{INSTANCE}/{TABLE}/{done.stem}"})
    (folder / "000000000001-18f3b-124.jsonl").write_bytes(line("legacy-new"))
    wal = new_wal(tmp_path)
    assert wal.start() == 1
    wal.close()
    assert sorted(logged(tmp_path)) == ["legacy-done", "legacy-new"] and not segments(tmp_path)


def test_flush_failures_are_counted_logged_and_cleared(tmp_path: Path, caplog) -> None:
    lakehouse = tmp_path / "lakehouse"
    lakehouse.mkdir()
    blocker = table_path(lakehouse, TABLE)
    blocker.write_text("not a table")  # the commit cannot create the table here
    wal = new_wal(tmp_path)
    wal.start()
    assert wal.failing_since is None and wal.flush_failures == 0 and wal.backlog_rows() == 0
    for i in range(3):
        wal.append(TABLE, row(f"r-{i}"))
    wal.append("feedback", {"feedback_id": "f-1", "request_id": "r-0", "ts": utcnow()})
    assert wal.backlog_rows() == 4
    with caplog.at_level(logging.WARNING, logger="llmops.serving.wal"):
        for attempt in (1, 2):
            try:
                wal.flush()
            except Exception:  # noqa: BLE001 - the failure under test
                pass
            else:
                raise AssertionError("the flush should fail")
            assert wal.flush_failures == attempt
            if attempt == 1:
                since = wal.failing_since
            assert wal.failing_since == since is not None  # the streak's first failure
            wal.append(TABLE, row(f"late-{attempt}"))
    assert len([r for r in caplog.records if "flush" in r.getMessage()]) == 2
    assert wal.last_error
    # the other table is not held up by this one
    assert read_table(lakehouse, "feedback")["feedback_id"].tolist() == ["f-1"]
    assert wal.backlog_rows() == 5  # three rows and two late ones wait in closed segments

    blocker.unlink()
    assert wal.flush() == 5
    assert wal.failing_since is None and wal.last_error is None and wal.flush_failures == 2
    assert wal.backlog_rows() == 0
    wal.close()
    assert sorted(logged(tmp_path)) == ["late-1", "late-2", "r-0", "r-1", "r-2"]


# a gateway's log in another process: it appends rows, says so, then waits to be killed
HOLDER = """
import sys, time
from pathlib import Path
from llmops.serving.wal import WriteAheadLog, utcnow
wal = WriteAheadLog(Path(sys.argv[1]), Path(sys.argv[2]), ["inference_log"], "gw-test",
                    flush_interval_s=3600)
wal.start()
for i in range(3):
    wal.append("inference_log", {"request_id": f"held-{i}", "ts": utcnow(), "status": 200})
print("holding", flush=True)
time.sleep(300)
"""


def test_a_log_in_use_is_refused_and_left_alone(tmp_path: Path) -> None:
    from llmops.serving.wal import WalInUseError

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "wal"),
                               str(tmp_path / "lakehouse")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        (open_segment,) = segments(tmp_path)
        before = open_segment.read_bytes()
        second = new_wal(tmp_path)
        try:
            second.start()
            raise AssertionError("a second log started on a folder in use")
        except WalInUseError as exc:
            assert f"in use by process {holder.pid}" in str(exc)
            assert "gateway.instance" in str(exc)
        # nothing replayed, nothing deleted: the live process's segment is as it wrote it
        assert segments(tmp_path) == [open_segment] and open_segment.read_bytes() == before
        assert not (tmp_path / "lakehouse" / TABLE).exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # the kernel dropped the dead holder's lock: a restart takes over and replays its rows
    wal = new_wal(tmp_path)
    assert wal.start() == 3
    wal.close()
    assert sorted(logged(tmp_path)) == ["held-0", "held-1", "held-2"]
    again = new_wal(tmp_path)  # a closed log is free again in this process too
    assert again.start() == 0
    again.close()


# appends under a file size limit until one is refused: the kernel writes part of the row
# that crosses the limit (a short write), as on a full disk
SHORT = """
import os, resource, signal, sys
from pathlib import Path
from llmops.serving.wal import WalError, WriteAheadLog, utcnow
wal = WriteAheadLog(Path(sys.argv[1]), Path(sys.argv[2]), ["inference_log"], "gw-test",
                    flush_interval_s=3600)
wal.start()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
for i in range(100):
    try:
        wal.append("inference_log", {"request_id": f"row-{i}", "ts": utcnow(), "status": 200,
                                     "response": "x" * 50})
    except WalError as exc:
        print("refused", i, exc, flush=True)
        os._exit(0)
    print(f"row-{i}", flush=True)  # acknowledged
"""


def test_a_short_write_fails_its_request_and_is_never_committed(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", SHORT, str(tmp_path / "wal"),
                            str(tmp_path / "lakehouse")], capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == 0, child.stderr
    *acked, refused = child.stdout.splitlines()
    assert refused.startswith(f"refused {len(acked)} ") and "is the disk full?" in refused
    assert acked and acked == [f"row-{i}" for i in range(len(acked))]
    (seg,) = segments(tmp_path)
    assert seg.stat().st_size == 1000  # the refused row's first bytes are in it, torn
    wal = new_wal(tmp_path)
    assert wal.start() == len(acked)
    wal.close()
    assert logged(tmp_path) == acked and wal.quarantined == 0


def test_fsync_mode_syncs_each_row_and_a_failed_sync_fails_its_request(
        tmp_path: Path, monkeypatch) -> None:
    import errno

    import pytest

    from llmops.serving.wal import WalError

    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    wal = WriteAheadLog(tmp_path / "wal", tmp_path / "lakehouse", [TABLE, "feedback"], INSTANCE,
                        flush_interval_s=3600, fsync=True)
    wal.start()
    for i in range(3):
        wal.append(TABLE, row(f"row-{i}"))
    assert len(synced) == 3  # one sync per row, before append returns

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(WalError, match="cannot sync a inference_log row to disk"):
        wal.append(TABLE, row("row-unsynced"))
    monkeypatch.setattr(os, "fdatasync", real)
    wal.append(TABLE, row("row-3"))  # a new segment, synced again
    wal.close()
    # the rows acknowledged are committed; the one refused may be there too (its bytes were
    # written, only their sync failed), never more than once
    got = logged(tmp_path)
    assert sorted(r for r in got if r != "row-unsynced") == ["row-0", "row-1", "row-2", "row-3"]
    assert got.count("row-unsynced") <= 1
    without = new_wal(tmp_path / "plain")
    assert without.fsync is False


def test_the_default_instance_is_unique_across_hosts_and_an_old_log_keeps_its_name(
        tmp_path: Path) -> None:
    from llmops.serving.server import default_instance

    assert default_instance(tmp_path, 8000, host="pod-7F.example") == "gw-pod-7f-example-8000"
    assert default_instance(tmp_path, 8000, host="other") != default_instance(
        tmp_path, 8000, host="pod-7f")
    assert default_instance(tmp_path, 8001, host="h") != default_instance(tmp_path, 8000, host="h")
    (tmp_path / "wal" / "gw-8000").mkdir(parents=True)  # made under the old default
    assert default_instance(tmp_path, 8000, host="pod-7f") == "gw-8000"
