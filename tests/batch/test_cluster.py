"""The batch path on a two-node Ray cluster on loopback (``ray start`` twice).

The second node has its own custom resource; actors that ask for it can only run there, so
the rows' node ids show the work really ran on the second node, and all rows come back.
The cluster's processes are stopped by their session folder (``ray stop`` would stop every
Ray on the machine, the test session's own included).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.processes import running, wait_until
from tests.conftest import REPO, free_port

RAY = str(Path(sys.executable).parent / "ray")

_DRIVER = """
import json, sys, pandas as pd, ray
from llmops.config import load_settings
from llmops.batch import run_batch
from tests.batch.workers import Shout
settings = load_settings(root=sys.argv[1])
ray.init(log_to_driver=False)  # RAY_ADDRESS: the cluster; the job then runs on this connection
rows = pd.DataFrame({"id": [f"row-{i:04d}" for i in range(200)],
                     "text": [f"text {i}" for i in range(200)]})
result = run_batch("shout", rows, Shout, settings, required=["text"], batch_size=20,
                   actors=1, resources={"node2": 0.5}, progress=False, mlflow_run=False)
second = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "node2" in n["Resources"]]
print(json.dumps({"nodes": result.nodes, "second": second, "ray_nodes": result.ray.nodes,
                  "ids": sorted(result.frame["id"]), "errors": result.errors,
                  "shout_ok": bool((result.frame["shout"] == result.frame["id"].map(
                      dict(zip(rows["id"], rows["text"].str.upper())))).all())}))
"""


def _kill_cluster(temp_dir: str) -> list[int]:
    """SIGKILL every process whose command line names the cluster's temp folder; their pids."""
    killed = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if temp_dir.encode() in cmd and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
            except OSError:
                pass
    return killed


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[str]:
    temp_dir = f"/tmp/rt-{uuid.uuid4().hex[:8]}"  # short: Ray's socket paths must fit
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=1",
                        "--include-dashboard=false", f"--temp-dir={temp_dir}",
                        "--disable-usage-stats"], env=env, check=True, capture_output=True,
                       timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1",
                        "--resources", json.dumps({"node2": 1}), "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        killed = _kill_cluster(temp_dir)
        # gone before their folder is removed (a dying raylet still writes to it)
        wait_until(lambda: not any(running(pid) for pid in killed), timeout=30,
                   what="the cluster's processes to exit")
        subprocess.run(["rm", "-rf", temp_dir], check=False)


@pytest.mark.slow
def test_work_runs_on_the_second_node_and_every_row_comes_back(two_nodes, project) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": two_nodes,
           "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _DRIVER, str(project)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ray_nodes"] == 2 and len(got["second"]) == 1
    assert got["nodes"] == {got["second"][0]: 200}
    assert got["ids"] == [f"row-{i:04d}" for i in range(200)]
    assert got["errors"] == 0 and got["shout_ok"]
