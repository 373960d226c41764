"""The update job on the Ray engine: the same collection as the local path, with the same
crash guarantees: SIGKILL of the driver at exact points and at random, and of a Ray worker
mid-batch; after a rerun the collection equals a clean build, and only what changed is
embedded.

The driver crashes use the hash embedder (the bookkeeping under test holds whatever the
vectors mean, and the Ray actors then load no model); the worker kill uses MiniLM, whose
loading and embedding keep an actor at work long enough to be killed mid-batch, and shows
that the Ray path writes the local path's vectors with the real model."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from llmops.errors import LlmopsError
from llmops.indexing import update_index
from llmops.processes import wait_until
from tests.conftest import REPO
from tests.indexing.conftest import snapshot
from tests.indexing.test_crash import assert_same, clean_build, mutate

JOB = (
    "from llmops.config import load_settings\n"
    "from llmops.indexing import update_index\n"
    "r = update_index(load_settings(root={root!r}), progress=False, record=False, "
    "engine='ray')\n"
    "print('embedded', r.embedded)\n"
)


def run_ray_job(root: Path, kill_at: str | None = None, kill_after_s: float | None = None,
                kill_worker: bool = False) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("LLMOPS_FAULT_KILL_AT", None)
    if kill_at:
        env["LLMOPS_FAULT_KILL_AT"] = kill_at
    proc = subprocess.Popen([sys.executable, "-c", JOB.format(root=str(root))], env=env,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if kill_after_s is not None:
        try:
            proc.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    if kill_worker:
        _kill_one_actor(proc)
    out, err = proc.communicate(timeout=600)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"job failed ({proc.returncode}): {err[-3000:]}")
    if proc.returncode == -signal.SIGKILL:
        _reap(proc.pid)
    return proc.returncode, out


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _reap(sid: int) -> None:
    """Whatever of that run's Ray is left (the fault point killed only the driver)."""
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


ACTOR_WORK_CPU_S = 2.0  # CPU seconds into an embedding actor: loading its embedder, or embedding


def _kill_one_actor(proc: subprocess.Popen) -> None:
    """SIGKILL the embedding actor's process once it is at work."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        for pid in _session_pids(proc.pid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"MapWorker" in title:
                # at work: CPU spent since it became the actor (a wall-clock wait would not
                # know how busy the machine is)
                with contextlib.suppress(psutil.Error, LlmopsError):
                    actor = psutil.Process(pid)
                    start = sum(actor.cpu_times()[:2])
                    wait_until(lambda a=actor, s=start: sum(a.cpu_times()[:2]) - s >= ACTOR_WORK_CPU_S,
                               timeout=max(1.0, deadline - time.monotonic()), interval=0.1,
                               what="the Ray actor to be at work")
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    return
        time.sleep(0.2)
    raise AssertionError("no Ray actor was seen working")


@pytest.mark.slow
def test_ray_engine_builds_the_same_collection_and_survives_crashes(
    hash_index_settings, corpus: Path, project: Path, tmp_path: Path
) -> None:
    rng = random.Random(11)
    # a first build on the local path (a full build on Ray is the test below): each round
    # then embeds its changes on Ray
    update_index(hash_index_settings, progress=False, record=False)
    # the random kill comes first in its round: after upsert:3 nothing is left to embed, and
    # a run with nothing to embed starts no Ray and is over before a kill at 2 s or later
    rounds = [["upsert:1"], [2.0, "upsert:3"]]
    killed = 0
    for round_no, plan in enumerate(rounds, start=1):
        mutate(corpus, rng, round_no)
        for point in plan:
            if isinstance(point, str):
                code, _ = run_ray_job(project, kill_at=point)
                assert code == -signal.SIGKILL, f"round {round_no}: {point} was never reached"
            else:
                code, _ = run_ray_job(project, kill_after_s=point + 4 * rng.random())
            killed += code == -signal.SIGKILL
        before = snapshot(hash_index_settings)
        code, out = run_ray_job(project)
        assert code == 0
        after = snapshot(hash_index_settings)
        assert_same(after, clean_build(corpus, project, tmp_path, round_no))
        # the minimum embedded: only the chunks the crashed runs had not written yet
        assert f"embedded {len(set(after) - set(before))}" in out
    assert killed >= 2


@pytest.mark.slow
def test_a_ray_worker_killed_mid_batch_is_replaced_and_nothing_is_lost(
    index_settings, corpus: Path, project: Path, tmp_path: Path
) -> None:
    code, out = run_ray_job(project, kill_worker=True)
    assert code == 0  # Ray retried the batch on a new actor
    clean = clean_build(corpus, project, tmp_path, 0)
    assert_same(snapshot(index_settings), clean)  # the local path's vectors, with MiniLM
    assert f"embedded {len(clean)}" in out  # each chunk written once, none missing
    code, out = run_ray_job(project)
    assert code == 0 and "embedded 0" in out


def test_an_unknown_engine_is_refused_before_anything_is_written(index_settings) -> None:
    from llmops.errors import IndexingError

    with pytest.raises(IndexingError, match="unknown engine 'spark'"):
        update_index(index_settings, engine="spark", progress=False, record=False)
