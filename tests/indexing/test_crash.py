"""Kill the update job with SIGKILL at many points of a run; a rerun must repair everything.

Each round changes the corpus, crashes a run (at an exact point through
``LLMOPS_FAULT_KILL_AT``, or at a random moment with ``kill -9`` from here),
sometimes crashes the rerun too, then lets a run finish and compares the
collection with a clean full build of the same corpus in a fresh store.

The jobs embed with the hash embedder: what is under test is the bookkeeping (which
chunks are in the store after a crash and a rerun), which holds whatever the vectors
mean, and a job that loads no model needs about 1 CPU second instead of about 6. The
random moments are drawn in CPU seconds of the job's own work (a share of what the
last whole run used), so that they fall before its end however busy the machine is.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from llmops.config import load_settings
from llmops.indexing import update_index
from tests.indexing.conftest import TOPICS, doc_text, snapshot

JOB = (
    "from llmops.config import load_settings\n"
    "from llmops.indexing import update_index\n"
    "update_index(load_settings(root={root!r}), progress=False, record=False)\n"
)


def run_job(root: Path, kill_at: str | None = None,
            kill_after_cpu_s: float | None = None) -> tuple[int, float]:
    """Run the job in a subprocess: its exit code, and the CPU seconds it used."""
    env = {**os.environ}
    env.pop("LLMOPS_FAULT_KILL_AT", None)
    if kill_at:
        env["LLMOPS_FAULT_KILL_AT"] = kill_at
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, "-c", JOB.format(root=str(root))], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after_cpu_s is not None:
        _kill_after_cpu(proc, kill_after_cpu_s)
    _, err = proc.communicate(timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"job failed ({proc.returncode}): {err[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return proc.returncode, cpu


def _kill_after_cpu(proc: subprocess.Popen, cpu_s: float) -> None:
    """SIGKILL the job once it has spent ``cpu_s`` CPU seconds (unless it ends first)."""
    deadline = time.monotonic() + 600
    try:
        job = psutil.Process(proc.pid)
        while proc.poll() is None:
            if sum(job.cpu_times()[:2]) >= cpu_s:
                proc.send_signal(signal.SIGKILL)
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the job did not reach {cpu_s:.2f} CPU seconds in 600 s")
            time.sleep(0.005)
    except psutil.NoSuchProcess:
        pass  # it ended first


def clean_build(corpus: Path, project: Path, tmp_path: Path, round_no: int) -> dict:
    """A full build of the corpus into a brand-new store."""
    root = tmp_path / f"clean{round_no}"
    root.mkdir()
    (root / "llmops.yaml").write_text(
        (project / "llmops.yaml").read_text()
    )
    settings = load_settings(root=root)
    update_index(settings, progress=False, record=False)
    return snapshot(settings)


def assert_same(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected), "ids differ from a clean build"
    docs = [(m["doc_id"], m["position"]) for _, m, _ in actual.values()]
    assert len(docs) == len(set(docs)), "duplicate chunks"
    for cid, (text, meta, emb) in actual.items():
        etext, emeta, eemb = expected[cid]
        assert (text, meta) == (etext, emeta)
        assert np.allclose(emb, eemb, atol=1e-5), f"embedding of {cid} differs"


def mutate(corpus: Path, rng: random.Random, round_no: int) -> None:
    files = sorted(corpus.glob("*.md"))
    for path in rng.sample(files, 4):  # every chunk of these changes
        text = doc_text(path.stem, revision=round_no)
        text = text.replace("Sentence", f"Sentence r{round_no}")
        path.write_text(text.replace("Step", f"Step r{round_no}"))
    for path in rng.sample(files, 2):
        path.unlink()
    for i in range(2):
        topic = f"new{round_no}x{i}"
        (corpus / f"{topic}.md").write_text(doc_text(topic))


@pytest.mark.slow
def test_kill_dash_nine_anywhere_then_rerun_equals_a_clean_build(
    hash_index_settings, corpus: Path, project: Path, tmp_path: Path
) -> None:
    rng = random.Random(7)
    code, run_cpu = run_job(project)
    assert code == 0
    crashes = [
        ["upsert:1"],                  # after the first batch is written
        ["upsert:3"],                  # mid-way through the upserts
        ["delete:1"],                  # after the upserts, during the deletes
        ["upsert:2", "upsert:1"],      # the rerun crashes too
        [0.5],                         # at a random moment (start-up, reading, planning)
        [0.2, 0.4],                    # random moments, twice in a row
    ]
    killed = 0
    for round_no, plan in enumerate(crashes, start=1):
        mutate(corpus, rng, round_no)
        for point in plan:
            if isinstance(point, str):
                code, _ = run_job(project, kill_at=point)
                assert code == -signal.SIGKILL, f"round {round_no}: {point} was never reached"
            else:  # a share of the CPU time of the last whole run: well before its end
                share = point + 0.3 * rng.random()
                code, _ = run_job(project, kill_after_cpu_s=share * run_cpu)
            killed += code == -signal.SIGKILL
        code, run_cpu = run_job(project)
        assert code == 0
        assert_same(snapshot(hash_index_settings), clean_build(corpus, project, tmp_path, round_no))
    assert killed >= 7
    # each round deletes two documents and adds two
    assert len(list(corpus.glob("*.md"))) == len(TOPICS)
