"""The batch path on a real local Ray: bad rows, error shares, inputs, resumption, MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from llmops.batch import run_batch
from llmops.errors import BatchError
from tests.batch.workers import Shout
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("local_ray")


def _rows(n: int, special: dict[int, str] | None = None) -> pd.DataFrame:
    special = special or {}
    return pd.DataFrame({"id": [f"row-{i:04d}" for i in range(n)],
                         "text": [special.get(i, f"text {i}") for i in range(n)]})


def _read(path: Path) -> pd.DataFrame:
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_dataset().to_table().to_pandas()


def _delta_commits(path: Path) -> int:
    log = path / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def test_bad_rows_fail_alone_and_each_actor_builds_its_worker_once(settings, tmp_path) -> None:
    out = settings.lakehouse / "shouted"
    rows = _rows(300, {5: "poison", 50: "skip-me"})
    result = run_batch("shout", rows, Shout, settings, output=out, required=["text"],
                       keep=["text"], batch_size=20, actors=2, commit_rows=100,
                       max_error_share=0.05, progress=False)
    assert (result.rows, result.errors, result.skipped) == (300, 2, 0)
    table = _read(out).set_index("id")
    assert len(table) == 300 and table.index.is_unique
    assert table.loc["row-0005", "error"].startswith("ValueError: poisoned row")
    assert table.loc["row-0050", "error"] == "skipped on purpose"
    good = table[table["error"].isna()]
    assert len(good) == 298
    assert (good["shout"] == good["text"].str.upper()).all()
    assert (good["length"] == good["text"].str.len()).all()
    # the rest of the poisoned batch was answered too, one row at a time
    assert table.loc["row-0004", "shout"] == "TEXT 4" and pd.isna(table.loc["row-0005", "shout"])
    # 15 batches, at most 2 worker processes: the worker is built per actor, not per batch
    assert 1 <= table["pid"].dropna().nunique() <= 2
    assert result.commits == _delta_commits(out) >= 3
    assert sum(result.nodes.values()) == 300

    from mlflow import MlflowClient

    run = MlflowClient().get_run(result.run_id)
    assert run.data.metrics["rows"] == 300 and run.data.metrics["errors"] == 2
    assert run.data.tags["llmops.kind"] == "batch"


def test_too_many_failures_fail_the_run_and_keep_the_rows_done(settings) -> None:
    out = settings.lakehouse / "mostly-bad"
    rows = _rows(100, {i: "skip-me" for i in range(0, 100, 5)})
    with pytest.raises(BatchError, match=r"20 of 100 rows failed \(20.0%, above the limit of "
                                         r"10.0%\).*'error' column"):
        run_batch("shout", rows, Shout, settings, output=out, required=["text"], batch_size=25,
                  actors=1, max_error_share=0.1, progress=False, mlflow_run=False)
    table = _read(out)
    assert len(table) == 100 and table["error"].notna().sum() == 20


def test_bad_input_is_refused_and_nothing_is_written(settings, tmp_path) -> None:
    out = settings.lakehouse / "never"
    cases = [
        (tmp_path / "missing.jsonl", "does not exist"),
        (tmp_path / "rows.csv", r"give a Delta table folder, Parquet"),
        (tmp_path / "no-text.jsonl", r"has no column 'text' \(it has id, body\)"),
    ]
    (tmp_path / "rows.csv").write_text("id,text\n1,a\n")
    (tmp_path / "no-text.jsonl").write_text(json.dumps({"id": "1", "body": "a"}) + "\n")
    for source, message in cases:
        with pytest.raises(BatchError, match=message):
            run_batch("shout", source, Shout, settings, output=out, required=["text"],
                      progress=False, mlflow_run=False)
    assert not out.exists()
    # an existing table that is not this job's output is refused, and left as it was
    from deltalake import write_deltalake

    other = settings.lakehouse / "other"
    write_deltalake(str(other), pd.DataFrame({"key": ["a"]}))
    with pytest.raises(BatchError, match="has no 'id' column: it is not this job's output"):
        run_batch("shout", _rows(3), Shout, settings, output=other, required=["text"],
                  progress=False, mlflow_run=False)
    assert _delta_commits(other) == 1


def test_delta_parquet_and_jsonl_inputs_and_ids_made_from_content(settings, tmp_path) -> None:
    from deltalake import write_deltalake

    rows = _rows(40)
    write_deltalake(str(tmp_path / "in-delta"), rows)
    rows.to_parquet(tmp_path / "in.parquet")
    for source in (tmp_path / "in-delta", tmp_path / "in.parquet", rows):
        result = run_batch("shout", source, Shout, settings, required=["text"], batch_size=8,
                           actors=1, progress=False, mlflow_run=False)
        assert sorted(result.frame["id"]) == sorted(rows["id"])
        assert (result.frame["shout"] == result.frame["id"].map(
            dict(zip(rows["id"], rows["text"].str.upper(), strict=True)))).all()
    # JSON lines without an id: each row's id is a hash of its content, stable across runs,
    # so a rerun finds every row already done
    jsonl = tmp_path / "no-ids.jsonl"
    jsonl.write_text("".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(30)))
    out = settings.lakehouse / "from-jsonl"
    built = tmp_path / "built"
    first, again = (run_batch("shout", jsonl, Shout, settings, output=out, required=["text"],
                              keep=["text"], batch_size=8, actors=1, progress=False,
                              mlflow_run=False, worker_kwargs={"built_log": str(built)})
                    for _ in range(2))
    assert (first.rows, again.rows, again.skipped) == (30, 0, 30)
    # with nothing left to do, the rerun started no actor (and so built no worker)
    assert len(built.read_text().split()) == first.actors == 1 and again.actors == 0
    table = _read(out)
    assert table["id"].is_unique and len(table) == 30 and table["id"].str.len().eq(24).all()


_KILLABLE = """
import sys, pandas as pd
from llmops.config import load_settings
from llmops.batch import run_batch
from tests.batch.workers import Shout
settings = load_settings(root=sys.argv[1])
rows = pd.DataFrame({"id": [f"row-{i:04d}" for i in range(int(sys.argv[3]))],
                     "text": [f"text {i}" for i in range(int(sys.argv[3]))]})
result = run_batch("shout", rows, Shout, settings, output=sys.argv[2], required=["text"],
                   worker_kwargs={"delay_s": float(sys.argv[4])}, batch_size=10, actors=1,
                   commit_rows=40, progress=False, mlflow_run=False)
print(result.rows, result.skipped)
"""


def test_a_killed_run_resumes_with_no_row_twice_and_none_missing(settings, project) -> None:
    out = settings.lakehouse / "resumed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(project), str(out), "400",
                             "0.03"], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while _delta_commits(out) < 2:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no two commits in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait(timeout=30)
    done = len(_read(out))
    assert 80 <= done < 400
    again = subprocess.run([sys.executable, "-c", _KILLABLE, str(project), str(out), "400", "0"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    rows, skipped = map(int, again.stdout.split()[-2:])
    assert skipped == done and rows == 400 - done
    table = _read(out)
    assert table["id"].is_unique
    assert set(table["id"]) == {f"row-{i:04d}" for i in range(400)}
    assert table["error"].isna().all()


def test_an_output_on_s3_is_written_resumed_and_refused_when_bad(settings, s3_env: str) -> None:
    from deltalake import DeltaTable

    from llmops.lakehouse import LakehouseError
    from llmops.lakehouse.location import storage_options

    out = f"{s3_env}/shouted"
    first = run_batch("shout", _rows(40), Shout, settings, output=out, required=["text"],
                      batch_size=10, actors=1, commit_rows=20, progress=False, mlflow_run=False)
    assert (first.rows, first.commits) == (40, 2)
    again = run_batch("shout", _rows(50), Shout, settings, output=out, required=["text"],
                      batch_size=10, actors=1, progress=False, mlflow_run=False)
    assert (again.skipped, again.rows) == (40, 10)  # a rerun answers only the new rows
    table = DeltaTable(out, storage_options=storage_options(out)).to_pandas()
    assert len(table) == 50 and table["id"].is_unique
    assert sorted(table["shout"]) == sorted(f"TEXT {i}" for i in range(50))
    with pytest.raises(BatchError, match=r"--output: 'No_Such' .* not a valid S3 bucket name"):
        run_batch("shout", _rows(3), Shout, settings, output="s3://No_Such/x", required=["text"],
                  progress=False, mlflow_run=False)
    missing = "s3://llmops-no-such-bucket/out"
    with pytest.raises(LakehouseError, match=r"the bucket does not exist") as refused:
        run_batch("shout", _rows(3), Shout, settings, output=missing, required=["text"],
                  progress=False, mlflow_run=False)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in str(refused.value)
