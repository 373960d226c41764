"""The lakehouse on object storage: every table under an ``s3://`` URI, against a real S3 API
server the tests start (moto's server mode), with concurrent writers in several processes."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from llmops.errors import ConfigError, LlmopsError
from llmops.lakehouse import (
    LakehouseError,
    TableAppender,
    TableChanged,
    append_rows,
    optimize_tables,
    read_table,
    table_exists,
    vacuum_tables,
)
from tests.conftest import run_cli


def _feedback(i: int, **extra) -> dict:
    return {"feedback_id": f"f{i}", "request_id": f"r{i}", "ts": datetime.now(timezone.utc),
            "rating": 1, "source": "test", **extra}


def test_tables_round_trip_on_s3_and_keep_their_contract(s3_env: str) -> None:
    assert not table_exists(s3_env, "feedback")
    assert read_table(s3_env, "feedback").empty  # never written: empty, with the columns
    assert append_rows(s3_env, "feedback", [_feedback(i) for i in range(3)]) == 3
    assert table_exists(s3_env, "feedback")
    frame = read_table(s3_env, "feedback", columns=["feedback_id", "rating"])
    assert sorted(frame["feedback_id"]) == ["f0", "f1", "f2"]
    # pushed-down filters work the same there
    ids = read_table(s3_env, "feedback", request_ids=["r1"])
    assert list(ids["feedback_id"]) == ["f1"]
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert read_table(s3_env, "feedback", since=later).empty
    # a bad row is refused before anything is written
    with pytest.raises(LlmopsError, match="feedback.rating"):
        append_rows(s3_env, "feedback", [_feedback(9), _feedback(10, rating="up")])
    assert len(read_table(s3_env, "feedback")) == 3


_WRITER = """
import sys
from datetime import datetime, timezone
from llmops.lakehouse import TableAppender
root, who, commits = sys.argv[1], sys.argv[2], int(sys.argv[3])
table = TableAppender(root, "feedback")
for i in range(commits):
    table.append([{"feedback_id": f"{who}-{i}-{j}", "request_id": who, "rating": 1,
                   "ts": datetime.now(timezone.utc)} for j in range(3)])
"""


def test_concurrent_appends_from_several_processes_lose_and_repeat_nothing(
        s3_env: str, s3_server) -> None:
    """Three processes append 10 commits each at once: every commit lands exactly once
    (deltalake commits with a conditional put; a writer that loses a version takes the next)."""
    import os

    from deltalake import DeltaTable

    from llmops.lakehouse.location import storage_options, table_uri

    env = {**os.environ, **s3_server.env}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, s3_env, f"w{n}", "10"], env=env,
                              stderr=subprocess.PIPE, text=True) for n in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
    frame = read_table(s3_env, "feedback")
    assert len(frame) == 3 * 10 * 3
    assert frame["feedback_id"].is_unique
    assert frame.groupby("request_id").size().to_dict() == {f"w{n}": 30 for n in range(3)}
    table = DeltaTable(table_uri(s3_env, "feedback"), storage_options=storage_options(s3_env))
    assert table.version() == 3 * 10 - 1  # one version per commit: none lost, none merged


def test_a_conditional_append_loses_to_a_writer_that_decided_first(s3_env: str) -> None:
    append_rows(s3_env, "feedback", [_feedback(0)])
    first, second = TableAppender(s3_env, "feedback"), TableAppender(s3_env, "feedback")
    assert first.refresh() == second.refresh() == 0
    assert len(first.read()) == len(second.read()) == 1
    first.append([_feedback(1)], if_unchanged="decider")
    with pytest.raises(TableChanged, match="another writer committed 'decider'"):
        second.append([_feedback(2)], if_unchanged="decider")
    assert sorted(read_table(s3_env, "feedback")["feedback_id"]) == ["f0", "f1"]
    # read again, decided again: it lands
    assert second.refresh() == 1
    second.append([_feedback(2)], if_unchanged="decider")
    assert len(read_table(s3_env, "feedback")) == 3


def test_optimize_and_vacuum_on_s3(s3_env: str) -> None:
    for i in range(5):
        append_rows(s3_env, "feedback", [_feedback(i)])
    (done,) = optimize_tables(s3_env, ["feedback"])
    assert done["files_removed"] == 5 and done["files_added"] == 1 and done["bytes_removed"] > 0
    assert len(read_table(s3_env, "feedback")) == 5
    (listed,) = vacuum_tables(s3_env, ["feedback"], retention_hours=0, dry_run=True, force=True)
    assert len(listed["files"]) == 5 and listed["bytes"] == done["bytes_removed"]
    (gone,) = vacuum_tables(s3_env, ["feedback"], retention_hours=0, force=True)
    assert sorted(gone["files"]) == sorted(listed["files"])
    assert vacuum_tables(s3_env, ["feedback"], retention_hours=0, dry_run=True,
                         force=True)[0]["files"] == []
    assert sorted(read_table(s3_env, "feedback")["feedback_id"]) == [f"f{i}" for i in range(5)]


def test_an_environment_on_s3_through_the_cli(project: Path, s3_env: str) -> None:
    text = (project / "llmops.yaml").read_text().replace(
        "  staging: {}", f"  staging:\n    lakehouse: {s3_env}")
    (project / "llmops.yaml").write_text(text)
    from llmops.config import load_settings

    settings = load_settings("staging", project)
    assert settings.lakehouse == s3_env
    for i in range(3):
        append_rows(settings.lakehouse, "feedback", [_feedback(i)])
    out = run_cli("--env", "staging", "tables", "optimize", cwd=project)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "feedback" in out.stdout and s3_env not in out.stderr
    assert len(read_table(settings.lakehouse, "feedback")) == 3


def test_bad_lakehouse_settings_say_what_to_fix_and_write_nothing(
        s3_env: str, s3_server, monkeypatch: pytest.MonkeyPatch, project: Path) -> None:
    from llmops.config import load_settings

    secret = s3_server.env["AWS_SECRET_ACCESS_KEY"]
    # a bucket that does not exist
    missing = "s3://no-such-bucket-here/lake"
    with pytest.raises(LakehouseError) as info:
        append_rows(missing, "feedback", [_feedback(0)])
    assert "no-such-bucket-here" in str(info.value) and "\n" not in str(info.value)
    # wrong credentials: named, never shown
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + secret)
    with pytest.raises(LakehouseError) as info:
        read_table(s3_env, "feedback")
    text = str(info.value)
    assert "\n" not in text and secret not in text and "wrong-" not in text
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    # an endpoint nothing listens on
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(LakehouseError, match=r"AWS_ENDPOINT_URL") as info:
        append_rows(s3_env, "feedback", [_feedback(0)])
    assert "\n" not in str(info.value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    assert not table_exists(s3_env, "feedback")  # nothing half written anywhere
    # a scheme the lakehouse does not speak, and a malformed bucket
    for uri, said in (("gs://bucket/lake", "not supported"), ("s3://No_Bucket/x", "bucket name")):
        text = (project / "llmops.yaml").read_text().replace(
            "  staging: {}", f"  staging:\n    lakehouse: {uri}")
        (project / "llmops.yaml").write_text(text)
        with pytest.raises(ConfigError, match=said):
            load_settings("staging", project)
        (project / "llmops.yaml").write_text(text.replace(f"  staging:\n    lakehouse: {uri}",
                                                          "  staging: {}"))


_WAL_CHILD = """
import sys
from pathlib import Path
from llmops.serving.wal import WriteAheadLog, utcnow
wal = WriteAheadLog(Path(sys.argv[1]), sys.argv[2], ["inference_log"], "gw-s3",
                    flush_interval_s=3600)
wal.start()
for i in range(int(sys.argv[3])):
    wal.append("inference_log", {"request_id": f"acked-{i}", "ts": utcnow(), "status": 200})
    print(f"acked-{i}", flush=True)
wal.flush()  # LLMOPS_FAULT_KILL_AT=wal_committed: SIGKILL after the commit, before the delete
print("flushed", flush=True)
"""


def test_the_gateway_log_commits_to_s3_exactly_once_across_a_kill(s3_env: str, s3_server,
                                                                   tmp_path: Path) -> None:
    """The gateway's write-ahead log flushes to a table on S3; killed between the commit and
    the segment's delete, the restarted log finds its commit there and replays nothing."""
    import os
    import signal

    from llmops.serving.wal import WriteAheadLog, utcnow

    env = {**os.environ, **s3_server.env, "LLMOPS_FAULT_KILL_AT": "wal_committed"}
    child = subprocess.run([sys.executable, "-c", _WAL_CHILD, str(tmp_path / "wal"), s3_env, "20"],
                           capture_output=True, text=True, env=env, timeout=180)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    acked = child.stdout.split()
    assert len(acked) == 20 and "flushed" not in acked
    assert sorted(read_table(s3_env, "inference_log")["request_id"]) == sorted(acked)
    assert list((tmp_path / "wal" / "inference_log").glob("*.jsonl"))  # not yet deleted

    wal = WriteAheadLog(tmp_path / "wal", s3_env, ["inference_log"], "gw-s3",
                        flush_interval_s=3600)
    assert wal.start() == 0  # the table already holds the segment: nothing replayed
    wal.append("inference_log", {"request_id": "after-restart", "ts": utcnow(), "status": 200})
    wal.close()
    logged = read_table(s3_env, "inference_log")["request_id"].tolist()
    assert sorted(logged) == sorted([*acked, "after-restart"]), "a row lost or logged twice"
    assert not list((tmp_path / "wal" / "inference_log").glob("*.jsonl"))
