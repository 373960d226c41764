"""One gateway against two gateway replicas, over one engine and over two, side by side.

The same load (``--streams`` concurrent streaming chat requests, 64 by default, split evenly
over the gateways of a side; ``--requests`` in all, ``--tokens`` output tokens each) runs
against each side in turn, alternating the order over ``--rounds`` rounds:

- ``1 gw x 1 engine``: one gateway over one engine (the baseline);
- ``2 gw x 1 engine``: two gateway replicas over the same engine;
- ``1 gw x 2 engines``: one gateway over an engine pool of two;
- ``2 gw x 2 engines``: two replicas, each over the pool of both engines.

It prints output tokens/s, time to first token p50/p99, latency p50 and failed requests per
side, and each side's tokens/s over the baseline's. Goals: no failed request on any side,
and two engines at least 1.6x the tokens/s of one.

The engines: by default stub OpenAI servers (``tests/serving/stub_engine.py``) with a fixed
capacity each, ``--max-num-seqs`` streams at once and ``--token-ms`` per token, the others
queued, as a GPU engine's batch is bounded. This machine has no GPU, and two vLLM CPU engines
on 2 cores share the same cores, so only stand-ins show what a second engine adds; what is
measured is the gateways' and the pool's share. With ``--engine-url URL --engine-url URL``
(and the engines' key in ``LLMOPS_ENGINE_API_KEY``) it runs on real engines instead.

Usage:
  python benchmarks/replicas.py                          # stub engines, 64 streams
  python benchmarks/replicas.py --streams 64 --requests 512 --tokens 64 --rounds 2
  python benchmarks/replicas.py --engine-url http://10.0.0.5:8000 --engine-url http://10.0.0.6:8000
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from _harness import REPO, free_port, parser, stop_process_tree, write_json
from gateway_overhead import _median_ms, _pct, load

from llmops.processes import start_process, wait_for_http

STUB = REPO / "tests" / "serving" / "stub_engine.py"
KEY_ENV = "LLMOPS_ENGINE_API_KEY"


def start_stub(work: Path, key: str, max_num_seqs: int, token_ms: float
               ) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    log = work / f"engine-{port}.log"
    proc = start_process([sys.executable, str(STUB), "--port", str(port),
                          "--max-num-seqs", str(max_num_seqs), "--token-ms", str(token_ms)],
                         log, env={**os.environ, "VLLM_API_KEY": key})
    wait_for_http(f"http://127.0.0.1:{port}/health", timeout=30, proc=proc, log_path=log,
                  what="the stub engine")
    return f"http://127.0.0.1:{port}", proc


def start_gateways(work: Path, engines: list[str], count: int, key: str | None,
                   tokens: int) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """``count`` gateways (replicas: one project, a log each) over ``engines``."""
    (work / "serving").mkdir(exist_ok=True)
    (work / "serving" / "endpoint.yaml").write_text(
        "engine:\n  served_model_name: base\n  enable_lora: false\n"
        f"gateway:\n  max_tokens_cap: {max(1024, tokens)}\n  engine_check_interval_s: 1.0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    if key:
        env[KEY_ENV] = key
    out = []
    for _ in range(count):
        port = free_port()
        log = work / f"gateway-{port}.log"
        args = [a for url in engines for a in ("--engine-url", url)]
        proc = start_process([sys.executable, "-m", "llmops.cli.main", "serve", "--port",
                              str(port), *args], log, cwd=work, env=env, append=False)
        out.append((f"http://127.0.0.1:{port}", proc))
        # one after the other: the first creates the project's MLflow store (SQLite here; a
        # deployment's replicas share an MLflow server)
        wait_for_http(out[-1][0] + "/readyz", timeout=120, proc=proc, log_path=log,
                      what="the gateway to answer /readyz")
    return out


def run_side(gateways: list[str], streams: int, requests: int, tokens: int, name: str,
             procs: int) -> dict:
    """The load split over ``gateways`` at once; tokens/s over the longest of their walls."""
    results: list[dict] = [{} for _ in gateways]

    def one(i: int, url: str) -> None:
        results[i] = load(url, "base", tokens, streams // len(gateways),
                          requests // len(gateways), max(1, procs // len(gateways)),
                          f"{name.replace(' ', '')}-g{i}")

    threads = [threading.Thread(target=one, args=(i, url)) for i, url in enumerate(gateways)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(r["wall"] for r in results)
    ttft = sorted(x for r in results for x in r["_ttft"])
    lat = sorted(x for r in results for x in r["_lat"])
    return {"tok_s": sum(r["tokens"] for r in results) / wall, "wall": wall,
            "ttft_p50": _median_ms(ttft), "ttft_p99": _pct(ttft, 0.99),
            "lat_p50": _median_ms(lat), "requests": sum(r["requests"] for r in results),
            "failed": sum(r["failed"] for r in results)}


def main() -> int:
    p = parser(__doc__, json_out=True, workdir=True)
    p.add_argument("--engine-url", action="append", default=[],
                   help="a running engine (give two; default: start two stub engines)")
    p.add_argument("--streams", type=int, default=64, help="concurrent streams per side")
    p.add_argument("--requests", type=int, default=384, help="requests per side and round")
    p.add_argument("--tokens", type=int, default=48, help="output tokens per request")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-num-seqs", type=int, default=16, help="a stub engine's batch")
    p.add_argument("--token-ms", type=float, default=20.0, help="a stub engine's time per token")
    p.add_argument("--client-procs", type=int, default=2)
    args = p.parse_args()
    if args.engine_url and len(args.engine_url) != 2:
        p.error("give two --engine-url (or none, for stub engines)")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="replicas-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "llmops.yaml").write_text("project: bench\n")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if args.engine_url:
            engines, key = args.engine_url, os.environ.get(KEY_ENV)
            print(f"engines: {engines}", flush=True)
        else:
            key = secrets.token_hex(16)
            engines = []
            for _ in range(2):
                url, proc = start_stub(work, key, args.max_num_seqs, args.token_ms)
                engines.append(url)
                procs.append(proc)
            per = args.max_num_seqs * 1000 / args.token_ms
            print(f"stub engines: {args.max_num_seqs} streams at once, {args.token_ms} ms per "
                  f"token: at most {per:.0f} tokens/s each", flush=True)
        layouts = {"1 gw x 1 engine": (1, engines[:1]), "2 gw x 1 engine": (2, engines[:1]),
                   "1 gw x 2 engines": (1, engines), "2 gw x 2 engines": (2, engines)}
        started = {}
        for name, (count, urls) in layouts.items():
            folder = work / name.replace(" ", "")
            folder.mkdir(exist_ok=True)
            shutil.copy(work / "llmops.yaml", folder / "llmops.yaml")
            started[name] = start_gateways(folder, urls, count, key, args.tokens)
            procs += [proc for _, proc in started[name]]
        runs: dict[str, list[dict]] = {name: [] for name in layouts}
        for rnd in range(args.rounds):
            names = list(layouts) if rnd % 2 == 0 else list(reversed(layouts))
            for name in names:
                print(f"round {rnd + 1}: {name}", flush=True)
                runs[name].append(run_side([u for u, _ in started[name]], args.streams,
                                           args.requests, args.tokens, name, args.client_procs))
        table = {}
        for name, side in runs.items():
            table[name] = {
                "tok_s": sum(r["tok_s"] * r["wall"] for r in side) / sum(r["wall"] for r in side),
                "ttft_p50": sorted(r["ttft_p50"] for r in side)[len(side) // 2],
                "ttft_p99": max(r["ttft_p99"] for r in side),
                "lat_p50": sorted(r["lat_p50"] for r in side)[len(side) // 2],
                "failed": sum(r["failed"] for r in side),
                "requests": sum(r["requests"] for r in side)}
        base = table["1 gw x 1 engine"]["tok_s"]
        print(f"\n{args.streams} streams, {args.tokens} tokens each, {args.rounds} rounds")
        print(f"{'side':<20}{'tok/s':>9}{'vs 1x1':>8}{'ttft p50':>11}{'ttft p99':>11}"
              f"{'lat p50':>10}{'failed':>8}")
        for name, row in table.items():
            print(f"{name:<20}{row['tok_s']:9.0f}{row['tok_s'] / base:8.2f}"
                  f"{row['ttft_p50']:9.0f}ms{row['ttft_p99']:9.0f}ms{row['lat_p50']:8.0f}ms"
                  f"{row['failed']:8d}")
        two = table["2 gw x 2 engines"]["tok_s"] / table["2 gw x 1 engine"]["tok_s"]
        failed = sum(row["failed"] for row in table.values())
        print(f"\ntwo engines / one (two replicas each): {two:.2f}x (goal >= 1.6); "
              f"failed requests: {failed} (goal 0)")
        write_json(getattr(args, "json_out", None), {"sides": table, "two_over_one": two})
        return 0 if failed == 0 and two >= 1.6 else 1
    finally:
        for proc in procs:
            stop_process_tree(proc, grace_s=30)


if __name__ == "__main__":
    sys.exit(main())
