"""Where the test suite's time goes: wall, the machine's busy and idle core-seconds, and the
core-seconds of each kind of process, for one or more pytest-xdist worker counts side by side.

Each configuration runs ``make test``'s first part (every test but the demo's, ``-n N --dist
loadfile``, in a fresh ``LLMOPS_TEST_CACHE``) while a sampler reads every process on the machine
once a second. A process is counted from its first sample (CPU it had used before the run is
left out) to its last, so a server that dies with its test is counted, and so are the Ray
workers and vLLM engines that no ``time`` of the pytest process sees (they are not its waited
children). Processes that live under a second are missed. The machine's busy and idle time come
from ``/proc/stat``: idle near zero means the suite is CPU-bound and more workers cannot help.

Usage: python benchmarks/suite_profile.py [--workers 2,3] [--pytest-args "tests/serving"]
                                          [--json-out FILE]
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _harness import REPO, parser, write_json

# (kind, a substring of the command line); the first match names the process
KINDS = (
    ("vLLM", "EngineCore"), ("vLLM", "VLLM::"), ("vLLM", "vllm.entrypoints"),
    ("vLLM", "engine_guard"),
    ("Ray workers", "default_worker.py"), ("Ray workers", "ray::"),
    ("Ray services", "raylet"), ("Ray services", "gcs_server"), ("Ray services", "dashboard"),
    ("Ray services", "runtime_env"), ("Ray services", "log_monitor"),
    ("Ray services", "monitor.py"),
    ("pytest (workers, in-process CLI and chains)", "pytest"),
    ("gateways (llmops serve)", " serve"),
    ("other llmops commands", "bin/llmops"), ("other llmops commands", "llmops.cli.main"),
    ("browser", "chrom"), ("browser", "playwright"), ("browser", "node"),
    ("MLflow servers", "mlflow"), ("Chroma servers", "chroma"), ("S3 server (moto)", "moto"),
    ("PostgreSQL", "postgres"), ("git", "git"),
)


def kind_of(cmdline: str) -> str:
    for kind, needle in KINDS:
        if needle in cmdline:
            return kind
    return "other"


class Sampler:
    """Every process's CPU once a second, by kind; processes alive at the start count from
    what they had used then."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.first: dict[tuple[int, float], float] = {}
        self.last: dict[tuple[int, float], tuple[str, float]] = {}
        self._stop = threading.Event()
        self._sample(record_start=True)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self, record_start: bool = False) -> None:
        me = os.getpid()
        for proc in psutil.process_iter():
            if proc.pid == me:
                continue
            try:
                key = (proc.pid, proc.create_time())
                times = proc.cpu_times()
                cpu = times.user + times.system
                if key not in self.first:
                    self.first[key] = cpu if record_start else 0.0
                kind = self.last[key][0] if key in self.last else ""
                if kind in ("", "other"):  # a spawned child renames itself after a while
                    kind = kind_of(" ".join(proc.cmdline()) or proc.name())
                self.last[key] = (kind, cpu)
            except psutil.Error:
                continue

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self) -> dict[str, tuple[int, float]]:
        """Processes and core-seconds by kind."""
        self._stop.set()
        self._thread.join()
        self._sample()
        out: dict[str, list[float]] = {}
        for key, (kind, cpu) in self.last.items():
            used = cpu - self.first.get(key, 0.0)
            if used <= 0:
                continue
            entry = out.setdefault(kind, [0, 0.0])
            entry[0] += 1
            entry[1] += used
        return {k: (int(n), s) for k, (n, s) in out.items()}


def _cpu_stat() -> tuple[float, float]:
    """The machine's busy and idle core-seconds since boot (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    busy = sum(fields[:8]) - idle
    return busy / tick, idle / tick


def run(workers: int, pytest_args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers),
           "--dist", "loadfile", "--no-loadscope-reorder", "--ignore=tests/test_demo.py",
           *pytest_args]
    with tempfile.TemporaryDirectory(prefix="llmops-suite-cache-") as cache:
        env = {**os.environ, "LLMOPS_TEST_CACHE": cache, "CI": os.environ.get("CI", "true")}
        busy0, idle0 = _cpu_stat()
        sampler = Sampler()
        start = time.monotonic()
        print(f"-n {workers}: {shlex.join(cmd[1:])}", flush=True)
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.monotonic() - start
        kinds = sampler.stop()
        busy1, idle1 = _cpu_stat()
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"   {summary}", flush=True)
    return {"workers": workers, "exit": done.returncode, "summary": summary, "wall_s": wall,
            "busy_core_s": busy1 - busy0, "idle_core_s": idle1 - idle0, "cores": os.cpu_count(),
            "kinds": {k: {"processes": n, "core_s": s} for k, (n, s) in kinds.items()}}


def report(results: list[dict]) -> None:
    base = results[0]
    print(f"\n{'workers':>8} {'exit':>5} {'wall s':>8} {'busy core-s':>12} {'idle core-s':>12} "
          f"{'busy %':>7} {'wall ratio':>10}")
    for r in results:
        capacity = r["busy_core_s"] + r["idle_core_s"]
        print(f"{r['workers']:>8} {r['exit']:>5} {r['wall_s']:>8.0f} {r['busy_core_s']:>12.0f} "
              f"{r['idle_core_s']:>12.0f} {100 * r['busy_core_s'] / capacity:>6.0f}% "
              f"{r['wall_s'] / base['wall_s']:>9.2f}x")
    for r in results:
        print(f"\ncore-seconds by kind of process, -n {r['workers']} "
              f"(sampled: {sum(v['core_s'] for v in r['kinds'].values()):.0f} of "
              f"{r['busy_core_s']:.0f} busy):")
        for kind, v in sorted(r["kinds"].items(), key=lambda kv: -kv[1]["core_s"]):
            print(f"  {v['core_s']:8.0f}  {100 * v['core_s'] / r['busy_core_s']:5.1f}%  "
                  f"{kind} ({v['processes']} processes)")


def main() -> None:
    p = parser(__doc__, json_out=True)
    p.add_argument("--workers", default="2",
                   help="comma-separated pytest-xdist worker counts, run one after another")
    p.add_argument("--pytest-args", default="",
                   help="more pytest arguments, e.g. a folder to profile part of the suite")
    args = p.parse_args()
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    results = [run(n, shlex.split(args.pytest_args)) for n in counts]
    report(results)
    write_json(args.json_out, results)
    if any(r["exit"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
