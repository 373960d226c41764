"""The same streaming chat load sent straight to vLLM and through the gateway, side by side.

Many concurrent clients each send streaming chat requests with a fixed output
length (``max_tokens`` with ``ignore_eos``). For each concurrency it runs the
direct and the gateway side back to back (alternating which goes first), and
prints requests/s, output tokens/s, time to first token and latency p50/p99,
and the gateway/direct ratios. Afterwards it checks that ``inference_log``
gained exactly one row per request sent through the gateway.

The clients run in several processes (``--client-procs``) so that the load
generator is not the bottleneck.

With ``--adapter`` the same load also runs on a LoRA adapter: a random-weight
adapter of ``--adapter-rank`` for the served model is registered in MLflow and
hot-loaded through the gateway's admin endpoint (the registry path users take),
and each concurrency is measured on the base model and on the adapter.

While the load runs, the gateway's write-ahead log folder is sampled: its peak
size shows whether the log keeps up (it is drained by background Delta commits).

Usage:
  python benchmarks/gateway_overhead.py                       # starts vLLM (tiny model) + gateway
  python benchmarks/gateway_overhead.py --engine-url http://127.0.0.1:8100 --model PATH
  python benchmarks/gateway_overhead.py --concurrency 16 64 128 --requests 512 --tokens 128 --adapter
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _one(client, url: str, model: str, tokens: int, rid: str) -> tuple[float, float, int]:
    body = {"model": model, "stream": True, "max_tokens": tokens, "ignore_eos": True,
            "min_tokens": tokens, "messages": [{"role": "user", "content": f"Tell me about {rid}"}]}
    t0 = time.perf_counter()
    ttft = None
    n = 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body,
                             headers={"X-Request-Id": rid}) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line.startswith("data: [DONE]"):
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    n += 1
    return (ttft if ttft is not None else time.perf_counter() - t0), time.perf_counter() - t0, n


def _client_proc(url, model, tokens, concurrency, requests, prefix, out_q) -> None:
    import httpx

    async def run() -> list[tuple[float, float, int]]:
        # idle connections expire before the servers' 5 s keep-alive does, so that a request
        # never goes out on a connection the server is closing
        limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency,
                              keepalive_expiry=2.0)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(requests):
                queue.put_nowait(i)
            results = []

            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    try:
                        results.append(await _one(client, url, model, tokens, f"{prefix}-{i}"))
                    except httpx.HTTPError as exc:  # counted, not fatal: the run goes on
                        results.append((-1.0, -1.0, -1, f"{type(exc).__name__}"))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return results

    out_q.put(asyncio.run(run()))


def load(url: str, model: str, tokens: int, concurrency: int, requests: int, procs: int,
         prefix: str) -> dict[str, float]:
    procs = max(1, min(procs, concurrency))
    q: mp.Queue = mp.Queue()
    per_conc = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
    per_req = [requests // procs + (i < requests % procs) for i in range(procs)]
    workers = [mp.Process(target=_client_proc, args=(url, model, tokens, per_conc[i], per_req[i],
                                                      f"{prefix}-p{i}", q)) for i in range(procs)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    results = [r for _ in workers for r in q.get()]
    wall = time.perf_counter() - t0
    for w in workers:
        w.join()
    failed = [r for r in results if r[2] < 0]
    if failed:
        print(f"  {prefix}: {len(failed)} of {len(results)} requests failed "
              f"({', '.join(sorted({r[3] for r in failed}))})", flush=True)
    results = [r for r in results if r[2] >= 0]
    ttft = sorted(r[0] for r in results)
    lat = sorted(r[1] for r in results)
    out_tokens = sum(r[2] for r in results)

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    return {"req_s": len(results) / wall, "tok_s": out_tokens / wall,
            "ttft_p50": statistics.median(ttft) * 1000, "ttft_p99": pct(ttft, 0.99),
            "lat_p50": statistics.median(lat) * 1000, "lat_p99": pct(lat, 0.99),
            "requests": len(results), "failed": len(failed), "wall": wall, "tokens": out_tokens,
            "_ttft": ttft, "_lat": lat}


def pooled(runs: list[dict]) -> dict[str, float]:
    """Several runs of one side as one: totals over total time, percentiles over all requests."""
    ttft = sorted(x for r in runs for x in r["_ttft"])
    lat = sorted(x for r in runs for x in r["_lat"])
    wall = sum(r["wall"] for r in runs)

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    return {"req_s": sum(r["requests"] for r in runs) / wall,
            "tok_s": sum(r["tokens"] for r in runs) / wall,
            "ttft_p50": statistics.median(ttft) * 1000, "ttft_p99": pct(ttft, 0.99),
            "lat_p50": statistics.median(lat) * 1000, "lat_p99": pct(lat, 0.99),
            "requests": sum(r["requests"] for r in runs),
            "failed": sum(r.get("failed", 0) for r in runs)}


def wait_http(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def register_random_adapter(settings, model_path: str, rank: int) -> str:
    """A random-weight LoRA adapter for ``model_path``, registered as ``bench-lora@production``."""
    import mlflow
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmops.finetune import promote_adapter
    from llmops.finetune.base_model import resolve_base_model
    from llmops.finetune.packaging import log_adapter
    from llmops.stores import connect

    base = resolve_base_model(model_path, settings.models_dir, settings.root / "docs")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    work = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    folder = work / "adapter"  # the registered model keeps the folder's name
    get_peft_model(model, lora).save_pretrained(folder)
    connect(settings)
    with mlflow.start_run(run_name="bench-lora"):
        packaged = log_adapter(folder, base, "bench-lora", {
            "llmops.kind": "adapter", **base.tags(), "llmops.method": "random",
            "llmops.lora_rank": str(rank)}, settings)
    promote_adapter("bench-lora", "production", packaged.version, settings)
    shutil.rmtree(work, ignore_errors=True)
    return "bench-lora"


class FolderSampler:
    """The peak and last size of a folder, sampled in a thread (the write-ahead log)."""

    def __init__(self, folder: Path, every: float = 0.25) -> None:
        self.folder, self.every = folder, every
        self.peak = self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def size(self) -> int:
        total = 0
        for path in self.folder.rglob("*"):
            try:
                total += path.stat().st_size if path.is_file() else 0
            except OSError:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last = self.size()
            self.peak = max(self.peak, self.last)
            time.sleep(self.every)

    def __enter__(self) -> FolderSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.last = self.size()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine-url", help="a running vLLM server (default: start one)")
    p.add_argument("--model", default="tiny", help="model for a started engine (tiny or a folder)")
    p.add_argument("--served-model-name", default="base")
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--requests", type=int, default=256, help="requests per side and concurrency")
    p.add_argument("--tokens", type=int, default=32, help="output tokens per request")
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds per concurrency; each runs both sides, alternating which goes first")
    p.add_argument("--adapter", action="store_true", help="also measure on a registered LoRA adapter")
    p.add_argument("--adapter-rank", type=int, default=16)
    p.add_argument("--workdir", default=None)
    p.add_argument("--engine-arg", action="append", default=[], help="extra vLLM argument")
    p.add_argument("--json-out", default=None, help="write the results as JSON here")
    args = p.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="gateway-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    engine = None
    try:
        from llmops.config import load_settings
        from llmops.serving.config import EngineConfig
        from llmops.serving.engine import Engine, resolve_engine_model

        for folder in ("docs",):
            if (REPO / folder).is_dir() and not (work / folder).exists():
                shutil.copytree(REPO / folder, work / folder)
        (work / "llmops.yaml").write_text(f"project: bench\nmodels_dir: {REPO / '.llmops/models'}\n")
        settings = load_settings(root=work)
        cfg = EngineConfig(port=free_port(), served_model_name=args.served_model_name,
                           model=args.model, extra_args=args.engine_arg,
                           max_lora_rank=max(16, args.adapter_rank), enable_lora=args.adapter)
        model_path = resolve_engine_model(cfg, settings.models_dir, work / "docs")
        if args.engine_url:
            engine_url = args.engine_url.rstrip("/").removesuffix("/v1")
        else:
            engine = Engine(cfg, model_path, work / "engine.log")
            print(f"starting vLLM on {model_path} ...", flush=True)
            engine.start()
            engine_url = engine.url.removesuffix("/v1")
        gport = free_port()
        (work / "serving").mkdir(exist_ok=True)
        (work / "serving" / "endpoint.yaml").write_text(
            f"engine:\n  url: {engine_url}/v1\n  served_model_name: {args.served_model_name}\n"
            f"  model: {model_path}\n  enable_lora: {str(args.adapter).lower()}\n"
            f"  max_lora_rank: {max(16, args.adapter_rank)}\n"
            f"gateway:\n  port: {gport}\n  max_tokens_cap: {max(1024, args.tokens)}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
        gw = subprocess.Popen([sys.executable, "-m", "llmops.cli.main", "serve"], cwd=work,
                              env=env, stdout=open(work / "gateway.log", "wb"),
                              stderr=subprocess.STDOUT)
        procs.append(gw)
        gateway_url = f"http://127.0.0.1:{gport}"
        wait_http(gateway_url + "/healthz", 120)
        models = [args.served_model_name]
        if args.adapter:
            name = register_random_adapter(settings, model_path, args.adapter_rank)
            req = urllib.request.Request(gateway_url + "/admin/adapters/load",
                                         data=json.dumps({"name": name}).encode(),
                                         headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as resp:
                served = json.loads(resp.read())["loaded"]["model"]
            print(f"adapter {served} (rank {args.adapter_rank}) hot-loaded", flush=True)
            models.append(served)
        sent_through_gateway = 0
        for model in models:
            load(engine_url, model, 4, 4, 8, 1, f"warm-direct-{model}")
            load(gateway_url, model, 4, 4, 8, 1, f"warm-gw-{model}")
            sent_through_gateway += 8
        table = []
        with FolderSampler(settings.state_dir / "wal") as wal:
            for conc in args.concurrency:
                for model in models:
                    runs: dict[str, list[dict]] = {"direct": [], "gateway": []}
                    for rnd in range(args.rounds):
                        order = [("direct", engine_url), ("gateway", gateway_url)]
                        if rnd % 2:
                            order.reverse()
                        for side, url in order:
                            r = load(url, model, args.tokens, conc, args.requests,
                                     args.client_procs, f"{side}-{model}-c{conc}-r{rnd}")
                            runs[side].append(r)
                            if side == "gateway":
                                sent_through_gateway += r["requests"] + r["failed"]
                    res = {side: pooled(rs) for side, rs in runs.items()}
                    table.append((conc, model, res))
                    print(f"concurrency {conc}, {model}: done", flush=True)

        print()
        print(f"{'conc':>4} {'model':>16} {'side':>8} {'req/s':>8} {'tok/s':>9} {'ttft p50':>9} "
              f"{'ttft p99':>9} {'lat p50':>9} {'lat p99':>9}")
        for conc, model, res in table:
            for side in ("direct", "gateway"):
                r = res[side]
                print(f"{conc:>4} {model:>16} {side:>8} {r['req_s']:8.1f} {r['tok_s']:9.0f} "
                      f"{r['ttft_p50']:8.1f}ms {r['ttft_p99']:8.1f}ms {r['lat_p50']:8.0f}ms "
                      f"{r['lat_p99']:8.0f}ms")
            d, g = res["direct"], res["gateway"]
            print(f"{conc:>4} {model:>16} {'ratio':>8} {g['req_s'] / d['req_s']:8.3f} "
                  f"{g['tok_s'] / d['tok_s']:9.3f}   TTFT p50 added: "
                  f"{g['ttft_p50'] - d['ttft_p50']:+.1f} ms")
        if args.adapter:
            for conc in args.concurrency:
                rows = {m: r for c, m, r in table if c == conc}
                base, lora = rows[models[0]], rows[models[1]]
                print(f"{conc:>4} adapter/base tok/s: direct "
                      f"{lora['direct']['tok_s'] / base['direct']['tok_s']:.3f}, gateway "
                      f"{lora['gateway']['tok_s'] / base['gateway']['tok_s']:.3f}")
        # every request through the gateway is in inference_log exactly once
        from llmops.lakehouse import read_table

        deadline = time.time() + 60
        rows = read_table(settings.lakehouse, "inference_log")
        while len(rows) < sent_through_gateway and time.time() < deadline:
            time.sleep(0.5)
            rows = read_table(settings.lakehouse, "inference_log")
        exact = len(rows) == sent_through_gateway and rows["request_id"].is_unique
        print(f"inference_log: {len(rows)} rows for {sent_through_gateway} gateway requests, "
              f"unique ids: {rows['request_id'].is_unique}: {'OK' if exact else 'MISMATCH'}")
        print(f"write-ahead log: peak {wal.peak / 1e6:.2f} MB during the run, "
              f"{wal.last / 1e6:.2f} MB at the end")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({
                "table": [{"concurrency": c, "model": m, **{s: r[s] for s in r}}
                          for c, m, r in table],
                "log_rows": len(rows), "gateway_requests": sent_through_gateway,
                "wal_peak_bytes": wal.peak, "wal_end_bytes": wal.last}, indent=2))
        return 0 if exact else 1
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if engine:
            engine.stop()


if __name__ == "__main__":
    sys.exit(main())
