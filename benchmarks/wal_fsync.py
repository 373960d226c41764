"""What ``gateway.log_fsync`` costs: appends to the gateway's write-ahead log with and without
a sync to disk per row, side by side.

Each side appends inference_log rows (about 1 KB, as a chat request's row) to its own log: one
writer in a loop (a gateway's event loop logs from one thread), then 8 threads at once (what
the chain routes' thread pool does). Rounds alternate the order of the sides. It prints rows/s,
the latency of one append (p50, p99) and the ratio to the default (no sync); the disk under
``--workdir`` (default: a temporary folder) decides the figures.

Usage: python benchmarks/wal_fsync.py [--rows N] [--rounds R] [--workdir DIR] [--json-out FILE]
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _harness import parser, write_json

from llmops.lakehouse import inference_row
from llmops.serving.wal import WriteAheadLog, utcnow


def _row() -> dict:
    return {**inference_row(uuid.uuid4().hex, "/v1/chat/completions", client="bench",
                            model="base", status=200, latency_ms=12.5, prompt_tokens=200,
                            completion_tokens=64, request="q" * 600, response="a" * 300),
            "env": "dev", "ts": utcnow()}


def _append(wal: WriteAheadLog, rows: int, threads: int) -> tuple[float, list[float]]:
    """Seconds for ``rows`` appends spread over ``threads``, and each append's seconds."""
    latencies: list[float] = []
    lock = threading.Lock()
    row = _row()

    def work(count: int) -> None:
        mine = []
        for _ in range(count):
            start = time.perf_counter()
            wal.append("inference_log", {**row, "request_id": uuid.uuid4().hex})
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=work, args=(rows // threads,)) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - start, latencies


def main() -> None:
    p = parser(__doc__, json_out=True, workdir=True)
    p.add_argument("--rows", type=int, default=2000, help="Rows per side and round.")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="wal-fsync-"))
    results: dict[str, dict] = {}
    for threads in (1, 8):
        seconds: dict[str, float] = {"off": 0.0, "fsync": 0.0}
        lat: dict[str, list[float]] = {"off": [], "fsync": []}
        for rnd in range(args.rounds):
            order = ["off", "fsync"] if rnd % 2 == 0 else ["fsync", "off"]
            for side in order:
                folder = base / f"{side}-{threads}-{rnd}"
                # a long flush interval: no commit runs while the appends are measured
                wal = WriteAheadLog(folder / "wal", folder / "lake", ["inference_log"], "bench",
                                    flush_interval_s=3600, batch_size=10**9,
                                    fsync=side == "fsync")
                wal.start()
                secs, each = _append(wal, args.rows, threads)
                wal.close()  # commits the rows to Delta: not part of the measured appends
                seconds[side] += secs
                lat[side] += each
        print(f"\n{threads} writer(s), {args.rows} rows x {args.rounds} rounds per side")
        print(f"{'side':<8}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'x off':>8}")
        for side in ("off", "fsync"):
            rate = args.rows * args.rounds / seconds[side]
            q = statistics.quantiles(lat[side], n=100)
            print(f"{side:<8}{rate:10.0f}{q[49] * 1000:9.3f}{q[98] * 1000:9.3f}"
                  f"{seconds[side] / seconds['off']:8.2f}")
            results[f"{side}-{threads}"] = {"rows_per_s": rate, "p50_ms": q[49] * 1000,
                                            "p99_ms": q[98] * 1000}
    write_json(args.json_out, results)


if __name__ == "__main__":
    main()
