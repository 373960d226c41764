"""What the benchmarks share: their command line, side-by-side timing, the ratio table, servers.

A benchmark measures two or more sides in one run and prints ratios (docs: CONVENTIONS,
"Benchmarks are not tests"). The pieces each of them used to write again live here:

- :func:`parser`: the usage line from the module docstring, and the usual ``--json-out`` /
  ``--workdir`` options;
- :func:`timed` and :func:`side_by_side`: wall time of one call, and of several sides called
  in rounds whose order alternates, so that machine noise hits every side alike;
- :func:`ratio_table`: seconds, throughput and ratios against named baselines, aligned;
- :func:`start_gateway`: ``llmops serve`` in a work folder, waited for through
  :mod:`llmops.processes` (whose :func:`~llmops.processes.free_port` and
  :func:`~llmops.processes.stop_process_tree` the benchmarks use too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from llmops.processes import free_port, start_process, stop_process_tree, wait_for_http

__all__ = ["REPO", "free_port", "parser", "ratio_table", "side_by_side", "start_gateway",
           "stop_process_tree", "timed", "write_json"]

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def parser(doc: str | None, *, json_out: bool = False, workdir: bool = False
           ) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc`` (the benchmark's docstring),
    with ``--json-out FILE`` and ``--workdir DIR`` when asked for."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    if json_out:
        p.add_argument("--json-out", default=None, help="write the results as JSON here")
    if workdir:
        p.add_argument("--workdir", default=None, help="work folder (default: a new temp folder)")
    return p


def write_json(path: str | Path | None, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` (nothing when ``path`` is None)."""
    if path:
        Path(path).write_text(json.dumps(data, indent=2))


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()``'s result and the wall-clock seconds it took."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def side_by_side(sides: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 0
                 ) -> dict[str, list[float]]:
    """Seconds per call of each side, ``rounds`` times; odd rounds run the sides in reverse
    order. Entry ``i`` of every list comes from round ``i`` (pairs for paired differences)."""
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for rnd in range(rounds):
        for name in (reversed(names) if rnd % 2 else names):
            out[name].append(timed(sides[name])[1])
    return out


def ratio_table(seconds: Mapping[str, float], ratios: Mapping[str, str], *,
                items: float | Mapping[str, float] | None = None, per: str = "rows/s",
                label: str = "side", width: int = 40) -> None:
    """Print one line per side: its seconds, ``items``/s (one count for all sides, or one per
    side) and, per entry ``column: base`` of ``ratios``, its seconds over ``base``'s."""
    head = f"{label:<{width}}{'seconds':>9}"
    if items is not None:
        head += f"{per:>12}"
    head += "".join(f"{column:>{max(9, len(column) + 2)}}" for column in ratios)
    print(head)
    for side, secs in seconds.items():
        line = f"{side:<{width}}{secs:9.1f}"
        if items is not None:
            count = items[side] if isinstance(items, Mapping) else items
            line += f"{count / secs:12.1f}"
        line += "".join(f"{secs / seconds[base]:>{max(9, len(column) + 2)}.2f}"
                        for column, base in ratios.items())
        print(line)


def start_gateway(work: Path, port: int, *, env: Mapping[str, str] | None = None,
                  ready_path: str = "/readyz", timeout: float = 300) -> subprocess.Popen[bytes]:
    """``llmops serve`` run in ``work`` (its ``serving/endpoint.yaml`` names ``port``), logging
    to ``work/gateway.log``; returns once ``ready_path`` answers 200. MLflow experiment
    variables of this process are not passed on; ``env`` adds variables."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    full.update(env or {})
    log = work / "gateway.log"
    proc = start_process([sys.executable, "-m", "llmops.cli.main", "serve"], log, cwd=work,
                         env=full, append=False)
    try:
        wait_for_http(f"http://127.0.0.1:{port}{ready_path}", timeout=timeout, proc=proc,
                      log_path=log, what=f"the gateway to answer {ready_path}")
    except BaseException:
        stop_process_tree(proc, grace_s=30)
        raise
    return proc
