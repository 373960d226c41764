"""vLLM's CPU build with and without its busy wait, side by side (``llmops.serving.vllm_plugin``).

Each side starts an engine the way ``llmops serve`` does (``llmops.serving.engine.Engine``):
``spin`` with ``LLMOPS_VLLM_NO_BUSY_WAIT=0`` (vLLM as shipped: a process waiting on its
shared-memory queue spins on ``sched_yield`` for a second after each read), ``nap`` with
``=1`` (llmops' default for the CPU build: it sleeps 0.2 ms between looks), and ``nap`` with
OpenMP's passive wait policy too (``OMP_WAIT_POLICY=PASSIVE``, not llmops' default: for
comparison). Then the same load runs against it: ``--requests`` chat requests,
``--concurrency`` at a time, greedy, ``--tokens`` tokens each. Measured per side: the load's
wall time, the engine's CPU (its watchdog and every vLLM process under it) and the machine's
busy core-seconds (``/proc/stat``) over the load; with ``--beside``, a Python loop runs in
another process during the load (standing for the rest of a test suite or a demo on the same
cores) and its loops per second are printed. Sides alternate over ``--rounds`` rounds; an
engine is started for each side in each round.

Usage: python benchmarks/vllm_busy_wait.py [--model smollm2|tiny] [--requests 32]
           [--concurrency 4] [--tokens 64] [--rounds 2] [--beside] [--json-out FILE]
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from _harness import REPO, free_port, parser, write_json

from llmops.serving.vllm_plugin import ENV

QUESTIONS = [q.strip() for q in (
    "How do I promote a chain to production?", "What does the index job do with a changed "
    "file?", "Which table logs every request?", "How is a prompt version pinned?",
    "What does a canary decide on?", "How do I roll back a chain?",
    "Where do the fine-tuning rows come from?", "What is the gateway's default port?")]


def _busy() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _tree_cpu(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _spin_beside(stop: multiprocessing.synchronize.Event, out: multiprocessing.Queue) -> None:
    """Work beside the engine: count loop iterations until told to stop."""
    n = 0
    while not stop.is_set():
        for _ in range(10_000):
            n += 1
    out.put(n)


def run_side(env: dict[str, str], model: str, work: Path, args) -> dict[str, float]:
    import openai

    from llmops.serving.config import EngineConfig
    from llmops.serving.engine import Engine

    for name in (ENV, "OMP_WAIT_POLICY"):
        os.environ.pop(name, None)
    os.environ.update(env)
    cfg = EngineConfig(port=free_port(), max_model_len=2048, served_model_name="base",
                       enable_lora=False, start_timeout_s=600, env_passthrough=[ENV])
    engine = Engine(cfg, model, work / f"engine-{cfg.port}.log", state_dir=work)
    engine.start()
    try:
        client = openai.OpenAI(base_url=engine.url, api_key=engine.api_key, max_retries=0,
                               timeout=600)

        def ask(i: int) -> int:
            reply = client.chat.completions.create(
                model="base", messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]
                                         + f" (#{i})"}],
                max_tokens=args.tokens, temperature=0.0)
            return reply.usage.completion_tokens

        ask(0)  # a first request outside the measure (warm-up)
        stop, out = multiprocessing.Event(), multiprocessing.Queue()
        beside = multiprocessing.Process(target=_spin_beside, args=(stop, out)) \
            if args.beside else None
        cpu0, busy0, start = _tree_cpu(engine.proc.pid), _busy(), time.monotonic()
        if beside:
            beside.start()
        with ThreadPoolExecutor(args.concurrency) as pool:
            tokens = sum(pool.map(ask, range(1, args.requests + 1)))
        wall = time.monotonic() - start
        cpu, busy = _tree_cpu(engine.proc.pid) - cpu0, _busy() - busy0
        loops = 0
        if beside:
            stop.set()
            loops = out.get(timeout=30)
            beside.join(timeout=30)
        return {"wall_s": wall, "engine_core_s": cpu, "busy_core_s": busy, "tokens": tokens,
                "beside_loops_per_s": loops / wall}
    finally:
        engine.stop()


def main() -> None:
    p = parser(__doc__, json_out=True)
    p.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--beside", action="store_true",
                   help="run a CPU loop in another process during each load")
    p.add_argument("--models-dir", type=Path, default=REPO / ".llmops" / "models")
    args = p.parse_args()
    from llmops.models import ensure_model

    model = str(ensure_model(args.model, args.models_dir, REPO / "docs"))
    sides = {"spin (vLLM as shipped)": {ENV: "0"}, "nap (llmops default)": {ENV: "1"},
             "nap, OMP_WAIT_POLICY=PASSIVE": {ENV: "1", "OMP_WAIT_POLICY": "PASSIVE"}}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="llmops-busy-wait-") as tmp:
        for rnd in range(args.rounds):
            for name in (reversed(list(sides)) if rnd % 2 else list(sides)):
                got = run_side(sides[name], model, Path(tmp), args)
                print(f"round {rnd + 1} {name}: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in got.items()), flush=True)
                results[name].append(got)
    base = "spin (vLLM as shipped)"
    keys = ["wall_s", "engine_core_s", "busy_core_s", "beside_loops_per_s"]
    med = {name: {k: statistics.median(r[k] for r in rows) for k in keys}
           for name, rows in results.items()}
    print(f"\n{args.requests} requests, {args.concurrency} at a time, {args.tokens} tokens, "
          f"{args.model}, median of {args.rounds} rounds, {os.cpu_count()} cores")
    print(f"{'side':<28}{'wall s':>9}{'engine core-s':>15}{'busy core-s':>13}"
          f"{'beside loops/s':>16}{'wall ratio':>12}{'engine ratio':>14}")
    for name, m in med.items():
        print(f"{name:<28}{m['wall_s']:9.1f}{m['engine_core_s']:15.1f}{m['busy_core_s']:13.1f}"
              f"{m['beside_loops_per_s']:16.0f}{m['wall_s'] / med[base]['wall_s']:12.2f}"
              f"{m['engine_core_s'] / med[base]['engine_core_s']:14.2f}")
    write_json(args.json_out, {"args": {k: str(v) for k, v in vars(args).items()},
                               "results": results, "median": med})


if __name__ == "__main__":
    main()
