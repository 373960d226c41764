"""An evaluation run through the gateway against the chain alone and straight vLLM.

``llmops eval run`` evaluates 500 examples (the golden questions, cycled) with
the registered RAG chain pointed at the gateway, ``--concurrency`` predictions
at a time, on its fast path (every row scored into one table, 8 rows traced) and
with ``--traces all`` (every row through ``mlflow.genai.evaluate``). The gateway
logs every chat request the chain made; those exact request bodies are then sent
straight to vLLM with the same concurrency, and through the gateway again
without the harness, and the chain itself (retrieval, prompt, chat model through
the gateway) answers every question without the harness. Order: a warm-up
evaluation, the capture run, then direct, the fast evaluation, the chain alone,
direct again (the direct time is the mean of the two), the gateway replay and
the evaluation tracing every row.

Target: the (fast) evaluation takes at most 1.25x the chain alone.

vLLM gets a new key at each start: the direct replays send it (``Authorization: Bearer``)
and the gateway reads it from ``LLMOPS_ENGINE_API_KEY``. The captured bodies are the rows
the gateway logged (each under the gateway's own request id) for chat requests since the
capture began.

Usage:
  python benchmarks/eval_throughput.py [--examples 500] [--concurrency 16] [--json-out FILE]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _harness import REPO, free_port, parser, ratio_table, start_gateway, stop_process_tree, write_json

from llmops.errors import LlmopsError
from llmops.processes import wait_until


def replay(url: str, bodies: list[bytes], concurrency: int, key: str | None = None) -> float:
    """Send each chat request body once, ``concurrency`` at a time; seconds taken. ``key``:
    the engine's key, sent as a bearer token (the gateway here needs none)."""
    import httpx

    headers = {"content-type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=url, timeout=600, limits=limits) as client:
        def send(body: bytes) -> None:
            resp = client.post("/v1/chat/completions", content=body, headers=headers)
            resp.raise_for_status()

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send, bodies))
        return time.perf_counter() - start


def answer_all(ref: str, settings, gateway_url: str, questions: list[str],
               concurrency: int) -> float:
    """The chain (retrieval, prompt, chat model via the gateway) on every question, no harness."""
    from llmops.chains.registry import load_at_endpoint
    from llmops.registry import model_version

    model, _ = load_at_endpoint(model_version(ref, settings), gateway_url + "/v1")
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda q: model.predict([{"question": q}]), questions))
    return time.perf_counter() - start


def main() -> int:
    p = parser(__doc__, json_out=True, workdir=True)
    p.add_argument("--examples", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="eval-bench-"))
    for folder in ("prompts", "chains", "docs"):
        if not (work / folder).exists():
            shutil.copytree(REPO / folder, work / folder)
    (work / "llmops.yaml").write_text(
        f"project: eval-bench\nmodels_dir: {REPO / '.llmops/models'}\n")
    os.chdir(work)
    import pandas as pd

    from llmops.chains import log_chain
    from llmops.config import load_settings
    from llmops.evals import evaluate_chain
    from llmops.indexing import update_index
    from llmops.lakehouse import read_table
    from llmops.prompts import set_alias, sync_prompts
    from llmops.serving.config import EngineConfig
    from llmops.serving.engine import Engine, resolve_engine_model

    settings = load_settings(root=work)
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    logged = log_chain(work / "chains" / "docs_qa.py", alias="staging", settings=settings)
    golden = [json.loads(line) for line in (REPO / "evals" / "golden.jsonl").read_text().splitlines()]
    rows = [{**golden[i % len(golden)], "question": f"{golden[i % len(golden)]['question']}"
             + (f" ({i // len(golden)})" if i >= len(golden) else "")}
            for i in range(args.examples)]
    data = work / "bench.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (work / "warm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))

    cfg = EngineConfig(port=free_port(), enable_lora=False)
    engine = Engine(cfg, resolve_engine_model(cfg, settings.models_dir, work / "docs"),
                    work / "engine.log")
    gw = None
    try:
        print("starting vLLM ...", flush=True)
        engine.start()
        engine_url = engine.url.removesuffix("/v1")
        gport = free_port()
        (work / "serving").mkdir(exist_ok=True)
        (work / "serving" / "endpoint.yaml").write_text(
            f"engine:\n  url: {engine_url}/v1\ngateway:\n  port: {gport}\n")
        # the gateway's way to the engine's key
        gw = start_gateway(work, gport, env={cfg.api_key_env: engine.api_key}, timeout=300)
        gateway_url = f"http://127.0.0.1:{gport}"
        ref = f"{logged.name}/{logged.version}"

        def evaluate(path: Path, traces: int | str = 8) -> tuple[float, object]:
            start = time.perf_counter()
            report = evaluate_chain(ref, [path], settings, endpoint=gateway_url,
                                    concurrency=args.concurrency, record=False, traces=traces)
            return time.perf_counter() - start, report

        evaluate(work / "warm.jsonl")
        print(f"evaluating {args.examples} examples once to capture the chain's prompts ...",
              flush=True)
        before = time.time()
        evaluate(data)

        def captured():
            log = read_table(settings.lakehouse, "inference_log")
            log = log[(log["endpoint"] == "/v1/chat/completions") & (log["status"] == 200)]
            return log[log["ts"] >= pd.Timestamp(before, unit="s", tz="UTC")]

        # the gateway commits its log in the background
        with contextlib.suppress(LlmopsError):  # short of the count: reported just below
            wait_until(lambda: len(captured()) >= args.examples, timeout=60, interval=0.5,
                       what=f"{args.examples} logged chat requests")
        log = captured()
        bodies = [r.encode() for r in log["request"]]
        if len(bodies) != args.examples:
            print(f"expected {args.examples} logged chat requests, found {len(bodies)}")
            return 1

        direct_1 = replay(engine_url, bodies, args.concurrency, engine.api_key)
        eval_s, report = evaluate(data)
        chain_s = answer_all(ref, settings, gateway_url, [r["question"] for r in rows],
                             args.concurrency)
        direct_2 = replay(engine_url, bodies, args.concurrency, engine.api_key)
        through = replay(gateway_url, bodies, args.concurrency)
        all_s, full = evaluate(data, "all")
        direct = (direct_1 + direct_2) / 2
        ratio = eval_s / chain_s
        print()
        ratio_table({"direct to vLLM (mean of 2)": direct,
                     "same prompts through the gateway": through,
                     "the chain's answers, no harness": chain_s,
                     "llmops eval run (fast path, 8 traces)": eval_s,
                     "llmops eval run --traces all": all_s},
                    {"/direct": "direct to vLLM (mean of 2)",
                     "/chain": "the chain's answers, no harness"},
                    items=args.examples, per="examples/s")
        print(f"direct runs: {direct_1:.1f} s and {direct_2:.1f} s; concurrency "
              f"{args.concurrency}; token F1 {report.metrics['bench']['token_f1']:.3f} (fast), "
              f"{full.metrics['bench']['token_f1']:.3f} (all traced)")
        print(f"target: evaluation <= 1.25x the chain alone: "
              f"{'MET' if ratio <= 1.25 else 'NOT MET'} ({ratio:.2f}x)")
        write_json(args.json_out, {
            "examples": args.examples, "concurrency": args.concurrency, "direct_s": direct,
            "direct_runs_s": [direct_1, direct_2], "gateway_replay_s": through,
            "chain_s": chain_s, "eval_s": eval_s, "eval_all_traces_s": all_s,
            "ratio_to_chain": ratio})
        return 0
    finally:
        if gw is not None:
            stop_process_tree(gw, grace_s=30)
        engine.stop()


if __name__ == "__main__":
    sys.exit(main())
