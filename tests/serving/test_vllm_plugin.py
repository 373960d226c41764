"""``llmops.serving.vllm_plugin``: vLLM finds it through its entry point, and with
``LLMOPS_VLLM_NO_BUSY_WAIT=1`` a reader of vLLM's shared-memory queue naps between its looks
at the queue instead of spinning (real vLLM classes and zmq sockets, in a fresh
process so that the patch stays out of the test's own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from llmops.models.devices import vllm_cpu_environment
from llmops.serving.vllm_plugin import ENV

CHECK = r"""
import json, sys, time
import zmq
from vllm.distributed.device_communicators.shm_broadcast import SpinCondition
from vllm.plugins import load_plugins_by_group

ctx = zmq.Context()
addr = "ipc://" + sys.argv[1]
writer = SpinCondition(is_reader=False, context=ctx, notify_address=addr)
reader = SpinCondition(is_reader=True, context=ctx, notify_address=addr)


def waiting(seconds=0.5):
    # what a reader does while the block it wants is not written yet, within a second of
    # its last read: wait, look, wait again. Its share of a core over that time.
    cpu, start = time.process_time(), time.monotonic()
    waits = 0
    while time.monotonic() - start < seconds:
        reader.record_read()
        reader.wait(timeout_ms=1000)
        waits += 1
    wall = time.monotonic() - start
    return {"cpu_share": (time.process_time() - cpu) / wall, "waits_per_s": waits / wall}


out = {"shipped": waiting()}
plugins = load_plugins_by_group("vllm.general_plugins")  # vLLM's own loader
out["found"] = "llmops" in plugins
plugins["llmops"]()
out["patched"] = waiting()
print(json.dumps(out))
"""


def _run(tmp_path: Path, env_value: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if env_value is not None:
        env[ENV] = env_value
    done = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / "notify")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_plugin_is_registered_and_the_cpu_build_asks_for_it() -> None:
    found = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert found.get("llmops") == "llmops.serving.vllm_plugin:register"
    assert vllm_cpu_environment().get(ENV) == "1"  # vLLM's CPU build is what this machine has


def test_a_waiting_reader_naps_instead_of_spinning(tmp_path: Path) -> None:
    got = _run(tmp_path, "1")
    assert got["found"]
    shipped, patched = got["shipped"], got["patched"]
    # as shipped, the reader spins (sched_yield): a core's worth of CPU while it waits
    assert shipped["cpu_share"] > 0.3 and shipped["waits_per_s"] > 20_000, got
    # patched, it still looks often (a nap is 0.2 ms, a few more under load) on little CPU
    assert patched["cpu_share"] < 0.15 and 300 < patched["waits_per_s"] < 5_000, got
    assert patched["cpu_share"] < shipped["cpu_share"] / 3, got


def test_without_the_variable_the_plugin_changes_nothing(tmp_path: Path) -> None:
    got = _run(tmp_path, None)
    assert got["found"] and got["patched"]["cpu_share"] > 0.3, got
