"""The same streaming chat load sent straight to vLLM and through the gateway, side by side.

Many concurrent clients each send streaming chat requests with a fixed output
length (``max_tokens`` with ``ignore_eos``). For each concurrency it runs the
direct and the gateway side back to back (alternating which goes first), and
prints requests/s, output tokens/s, time to first token and latency p50/p99,
and the gateway/direct ratios, and the failed requests (not 200, an exception, or a
stream that ends without ``[DONE]``) of each side and round. Afterwards it checks that
``inference_log`` gained exactly one row per request sent through the gateway (matched on
``client_request_id``, the ``X-Request-Id`` each request sent; the gateway keys its rows
with ids of its own).

CPU cost: the CPU seconds (user + system) that the gateway process and vLLM's API server
process (the one running ``vllm.entrypoints.openai.api_server``, not its engine-core
children) spend during each run, per 1,000 streamed tokens and per request. vLLM's API
server is measured in both runs: in the direct run it is the whole serving front end; in
the gateway run it serves the gateway. The ratio gateway CPU per token / vLLM API server
CPU per token (direct run) is the gateway's cost relative to vLLM's own front end
(target: at most 0.5x).

The gateway runs as it would be exposed: an API key from a keys file, with per-key limits on
concurrent requests and requests per minute (set above the load, so they are checked on every
request and refuse none); ``--no-auth`` turns both off. ``--flush-interval`` sets the gateway's
``log_flush_interval_s`` (how often the write-ahead log commits to Delta).

vLLM gets a new key at each start: direct requests send it (``Authorization: Bearer``) and
the gateway reads it from ``LLMOPS_ENGINE_API_KEY``. With ``--engine-url`` the key is read
from that variable.

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

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from _harness import REPO, free_port, parser, start_gateway, stop_process_tree, write_json


class StreamFailed(Exception):
    """A 200 stream that carried an error event or ended without ``[DONE]``."""


async def _one(client, url: str, model: str, tokens: int, rid: str,
               headers: dict[str, str]) -> tuple[float, float, int]:
    """One streamed request: (time to first token, latency, output tokens). The tokens are the
    final usage chunk's ``completion_tokens`` (vLLM puts several tokens in one chunk when its
    reader falls behind), else the chunks with text."""
    body = {"model": model, "stream": True, "max_tokens": tokens, "ignore_eos": True,
            "min_tokens": tokens, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Tell me about {rid}"}]}
    t0 = time.perf_counter()
    ttft = None
    chunks = 0
    usage = None
    done = False
    stage = "before headers"
    opened = []  # whether this request opened its connection (else it reused a pooled one)

    async def trace(event: str, info: dict) -> None:
        if event.startswith("connection.connect_tcp"):
            opened.append(event)

    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body,
                                 headers={**headers, "X-Request-Id": rid},
                                 extensions={"trace": trace}) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise StreamFailed(f"HTTP {resp.status_code}")
            stage = "mid-stream"
            async for line in resp.aiter_lines():
                if line.startswith("data: [DONE]"):
                    done = True
                    continue
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    raise StreamFailed("error event")
                if event.get("usage"):
                    usage = event["usage"].get("completion_tokens")
                for choice in event.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        chunks += 1
    except StreamFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - named with where it happened
        conn = "new connection" if opened else "reused connection"
        raise StreamFailed(f"{type(exc).__name__} {stage} on a {conn} after "
                           f"{time.perf_counter() - t0:.1f} s ({rid})") from exc
    if not done:
        raise StreamFailed("no [DONE]")
    n = usage if usage is not None else chunks
    return (ttft if ttft is not None else time.perf_counter() - t0), time.perf_counter() - t0, n


def _client_proc(url, model, tokens, concurrency, requests, prefix, headers, out_q) -> None:
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
                        results.append(await _one(client, url, model, tokens, f"{prefix}-{i}",
                                                  headers))
                    except StreamFailed as exc:  # counted, not fatal: the run goes on
                        results.append((-1.0, -1.0, -1, str(exc)))
                    except Exception as exc:  # noqa: BLE001 - counted, not fatal
                        results.append((-1.0, -1.0, -1, f"{type(exc).__name__}"))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return results

    out_q.put(asyncio.run(run()))


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else float("nan")


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def _kind(failure: str) -> str:
    """A failure's kind: its text without the time and request id."""
    return failure.split(" after ")[0]


def load(url: str, model: str, tokens: int, concurrency: int, requests: int, procs: int,
         prefix: str, headers: dict[str, str] | None = None,
         cpu: dict[str, list[int]] | None = None, quiet: bool = False) -> dict[str, float]:
    """One run; ``cpu`` names process groups ({label: [pid, ...]}) whose CPU seconds
    (user + system) over the run are returned as ``cpu_LABEL``."""
    procs = max(1, min(procs, concurrency))
    q: mp.Queue = mp.Queue()
    per_conc = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
    per_req = [requests // procs + (i < requests % procs) for i in range(procs)]
    workers = [mp.Process(target=_client_proc, args=(url, model, tokens, per_conc[i], per_req[i],
                                                      f"{prefix}-p{i}", headers or {}, q))
               for i in range(procs)]
    cpu = cpu or {}
    cpu0 = {label: cpu_seconds(pids) for label, pids in cpu.items()}
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    results = [r for _ in workers for r in q.get()]
    wall = time.perf_counter() - t0
    cpu_used = {f"cpu_{label}": cpu_seconds(pids) - cpu0[label] for label, pids in cpu.items()}
    for w in workers:
        w.join()
    failed = [r for r in results if r[2] < 0]
    results = [r for r in results if r[2] >= 0]
    if not quiet:
        kinds = {k: sum(1 for r in failed if _kind(r[3]) == k)
                 for k in sorted({_kind(r[3]) for r in failed})}
        print(f"  {prefix}: {len(results)} ok, {len(failed)} failed"
              + (f" ({', '.join(f'{k}: {n}' for k, n in kinds.items())})" if failed else "")
              + f", {wall:.1f} s", flush=True)
        for r in failed[:5]:
            print(f"    failed: {r[3]}", flush=True)
    ttft = sorted(r[0] for r in results)
    lat = sorted(r[1] for r in results)
    out_tokens = sum(r[2] for r in results)

    return {"req_s": len(results) / wall, "tok_s": out_tokens / wall,
            "ttft_p50": _median_ms(ttft), "ttft_p99": _pct(ttft, 0.99),
            "lat_p50": _median_ms(lat), "lat_p99": _pct(lat, 0.99),
            "requests": len(results), "failed": len(failed), "wall": wall, "tokens": out_tokens,
            "failures": sorted({_kind(r[3]) for r in failed}), **cpu_used,
            "_ttft": ttft, "_lat": lat}


def pooled(runs: list[dict]) -> dict[str, float]:
    """Several runs of one side as one: totals over total time, percentiles over all requests,
    CPU seconds summed (``cpu_*``), failures per round (``failed_rounds``)."""
    ttft = sorted(x for r in runs for x in r["_ttft"])
    lat = sorted(x for r in runs for x in r["_lat"])
    wall = sum(r["wall"] for r in runs)
    cpu = {k: sum(r[k] for r in runs) for k in runs[0] if k.startswith("cpu_")}
    return {"req_s": sum(r["requests"] for r in runs) / wall,
            "tok_s": sum(r["tokens"] for r in runs) / wall,
            "ttft_p50": _median_ms(ttft), "ttft_p99": _pct(ttft, 0.99),
            "lat_p50": _median_ms(lat), "lat_p99": _pct(lat, 0.99),
            "requests": sum(r["requests"] for r in runs),
            "tokens": sum(r["tokens"] for r in runs), "wall": wall,
            "failed": sum(r.get("failed", 0) for r in runs),
            "failed_rounds": [r.get("failed", 0) for r in runs],
            "failures": sorted({f for r in runs for f in r.get("failures", ())}), **cpu}


# -- CPU seconds of processes ------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field 3 onwards), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds so far of these processes (all their threads; a process that
    is gone counts 0)."""
    total = 0.0
    for pid in pids:
        fields = _stat(pid)
        if fields:  # utime, stime are fields 14, 15 (index 11, 12 after the name)
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible."""
    out: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            fields = _stat(int(proc.name))
            if fields:
                out[int(proc.name)] = int(fields[1])
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    parents = _parents()
    found, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        todo += kids
    return found


def vllm_api_servers(port: int, root: int | None = None) -> list[int]:
    """vLLM's API server process(es) for ``port``: running ``vllm.entrypoints.openai.api_server``
    with a parent that does not (an engine-core child forked from it has the same command
    line). Searched under ``root`` (the engine's watchdog) or among the port's listeners."""
    from llmops.serving.engine import listening_pids

    module = "vllm.entrypoints.openai.api_server"

    def is_server(pid: int) -> bool:  # not the watchdog, whose command line holds vLLM's
        argv = _argv(pid)
        return (argv[1:3] == ["-m", module] and str(port) in argv[argv.index("--port") + 1:][:1]
                if "--port" in argv else False)

    pool = descendants(root) if root else listening_pids(port)
    parents = _parents()
    servers = [p for p in pool if is_server(p)]
    return [p for p in servers if parents.get(p) not in servers]


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


def cpu_table(table: list[tuple[int, str, dict]]) -> list[dict]:
    """Print CPU seconds per 1,000 streamed tokens and ms per request; return the rows."""
    print()
    print("CPU (user + system) per 1,000 streamed tokens and per request, over each side's runs")
    print(f"{'conc':>4} {'model':>16} {'gateway':>9} {'vLLM API':>9} {'vLLM API':>9} "
          f"{'gateway':>8} {'vLLM API':>9} {'vLLM API':>9} {'ratio':>7} {'ratio':>7}")
    print(f"{'':>4} {'':>16} {'s/1k tok':>9} {'direct':>9} {'gw run':>9} "
          f"{'ms/req':>8} {'ms/req d':>9} {'ms/req gw':>9} {'gw/d':>7} {'gw/gw':>7}")
    out = []
    for conc, model, res in table:
        d, g = res["direct"], res["gateway"]

        def per(side: dict, label: str, unit: str) -> float:
            n = side["tokens"] / 1000 if unit == "tok" else (side["requests"] + side["failed"]) / 1000
            return side.get(f"cpu_{label}", float("nan")) / n if n else float("nan")

        row = {"concurrency": conc, "model": model,
               "gateway_s_per_1k_tok": per(g, "gateway", "tok"),
               "vllm_api_direct_s_per_1k_tok": per(d, "vllm_api", "tok"),
               "vllm_api_gateway_run_s_per_1k_tok": per(g, "vllm_api", "tok"),
               "gateway_ms_per_req": per(g, "gateway", "req"),
               "vllm_api_direct_ms_per_req": per(d, "vllm_api", "req"),
               "vllm_api_gateway_run_ms_per_req": per(g, "vllm_api", "req"),
               "gateway_cpu_s": g.get("cpu_gateway"), "gateway_cpu_s_direct_run": d.get("cpu_gateway"),
               "vllm_api_cpu_s_direct": d.get("cpu_vllm_api"),
               "vllm_api_cpu_s_gateway_run": g.get("cpu_vllm_api")}
        row["ratio"] = row["gateway_s_per_1k_tok"] / row["vllm_api_direct_s_per_1k_tok"]
        row["ratio_gw_run"] = (row["gateway_s_per_1k_tok"]
                               / row["vllm_api_gateway_run_s_per_1k_tok"])
        out.append(row)
        print(f"{conc:>4} {model:>16} {row['gateway_s_per_1k_tok']:9.3f} "
              f"{row['vllm_api_direct_s_per_1k_tok']:9.3f} "
              f"{row['vllm_api_gateway_run_s_per_1k_tok']:9.3f} "
              f"{row['gateway_ms_per_req']:8.1f} {row['vllm_api_direct_ms_per_req']:9.1f} "
              f"{row['vllm_api_gateway_run_ms_per_req']:9.1f} {row['ratio']:6.2f}x "
              f"{row['ratio_gw_run']:6.2f}x")
    print("ratio gw/d: gateway CPU per token / vLLM API server CPU per token in the direct run "
          "(target <= 0.5x); gw/gw: the same over vLLM's API server in the gateway run")
    print("gateway CPU during the direct runs (idle cost), s: " + ", ".join(
        f"c{c} {r['direct'].get('cpu_gateway', float('nan')):.2f}" for c, _, r in table))
    return out


def print_failures(table: list[tuple[int, str, dict]]) -> bool:
    """Print failed requests per side and round; whether any failed through the gateway.

    The target is the gateway's: a direct request that fails is the load generator's own
    connection to vLLM (shown, not counted against the gateway)."""
    print()
    print("failed requests per round (not 200, an exception, or a stream without [DONE]):")
    any_failed = False
    for conc, model, res in table:
        parts = []
        for side in ("direct", "gateway"):
            r = res[side]
            any_failed |= side == "gateway" and r["failed"] > 0
            parts.append(f"{side} {'/'.join(map(str, r['failed_rounds']))}"
                         + (f" ({', '.join(r['failures'])})" if r["failures"] else ""))
        print(f"{conc:>4} {model:>16}  " + "; ".join(parts))
    print(f"target 0 failed through the gateway: {'MET' if not any_failed else 'NOT MET'}")
    return any_failed


def main() -> int:
    p = parser(__doc__, json_out=True, workdir=True)
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
    p.add_argument("--engine-arg", action="append", default=[], help="extra vLLM argument")
    p.add_argument("--no-auth", action="store_true",
                   help="run the gateway without keys and limits (default: both on)")
    p.add_argument("--flush-interval", type=float, default=None,
                   help="the gateway's log_flush_interval_s (default: its own default)")
    args = p.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="gateway-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    engine = None
    key_env = "LLMOPS_ENGINE_API_KEY"
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
        key_env = cfg.api_key_env
        if args.engine_url:
            engine_url = args.engine_url.rstrip("/").removesuffix("/v1")
            engine_key = os.environ.get(key_env)
        else:
            engine = Engine(cfg, model_path, work / "engine.log")
            print(f"starting vLLM on {model_path} ...", flush=True)
            engine.start()
            engine_url = engine.url.removesuffix("/v1")
            engine_key = engine.api_key
        engine_headers = {"Authorization": f"Bearer {engine_key}"} if engine_key else {}
        engine_port = int(engine_url.rsplit(":", 1)[1].split("/")[0])
        api_pids = vllm_api_servers(engine_port, engine.proc.pid if engine and engine.proc else None)
        if not api_pids:
            print(f"vLLM's API server process for port {engine_port} not found: no vLLM CPU "
                  "figures", flush=True)
        gport = free_port()
        (work / "serving").mkdir(exist_ok=True)
        # auth and per-key limits on, as a deployed gateway runs (limits set above the load,
        # so they are checked on every request but never refuse one)
        gw_key = secrets.token_urlsafe(24)
        gw_headers = {} if args.no_auth else {"Authorization": f"Bearer {gw_key}"}
        (work / "serving" / "keys.yaml").write_text(
            "keys:\n  - {name: bench, key: " + gw_key + ", scopes: [invoke, feedback, admin], "
            f"max_concurrent: {4 * max(args.concurrency)}, requests_per_minute: 1000000}}\n")
        (work / "serving" / "endpoint.yaml").write_text(
            f"engine:\n  url: {engine_url}/v1\n  served_model_name: {args.served_model_name}\n"
            f"  model: {model_path}\n  enable_lora: {str(args.adapter).lower()}\n"
            f"  max_lora_rank: {max(16, args.adapter_rank)}\n"
            f"gateway:\n  port: {gport}\n  max_tokens_cap: {max(1024, args.tokens)}\n"
            f"  default_max_tokens: {max(256, args.tokens)}\n"
            + (f"  log_flush_interval_s: {args.flush_interval}\n" if args.flush_interval else "")
            + ("" if args.no_auth else "auth:\n  keys_file: serving/keys.yaml\n")
        )
        print(f"gateway: auth and per-key limits {'off' if args.no_auth else 'on'}, log flush "
              f"every {args.flush_interval or 'default'} s", flush=True)
        gw = start_gateway(work, gport, env={key_env: engine_key} if engine_key else {},
                           ready_path="/healthz", timeout=120)
        procs.append(gw)
        gateway_url = f"http://127.0.0.1:{gport}"
        gateway_pids = descendants(gw.pid)  # the gateway; any helper process it started too
        print(f"gateway process(es) {gateway_pids}; vLLM API server process(es) {api_pids}",
              flush=True)
        cpu_groups = {"gateway": gateway_pids, "vllm_api": api_pids}
        models = [args.served_model_name]
        if args.adapter:
            name = register_random_adapter(settings, model_path, args.adapter_rank)
            req = urllib.request.Request(gateway_url + "/admin/adapters/load",
                                         data=json.dumps({"name": name}).encode(),
                                         headers={"content-type": "application/json",
                                                  **gw_headers})
            with urllib.request.urlopen(req, timeout=600) as resp:
                served = json.loads(resp.read())["loaded"]["model"]
            print(f"adapter {served} (rank {args.adapter_rank}) hot-loaded", flush=True)
            models.append(served)
        sent_through_gateway = 0
        for model in models:
            load(engine_url, model, 4, 4, 8, 1, f"warm-direct-{model}", engine_headers)
            load(gateway_url, model, 4, 4, 8, 1, f"warm-gw-{model}", gw_headers)
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
                                     args.client_procs, f"{side}-{model}-c{conc}-r{rnd}",
                                     engine_headers if side == "direct" else gw_headers,
                                     cpu_groups)
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
        cpu_rows = cpu_table(table)
        failed_any = print_failures(table)
        # every request through the gateway is in inference_log exactly once: the gateway keys
        # rows with its own ids; the X-Request-Id each request sent is client_request_id
        from llmops.errors import LlmopsError
        from llmops.lakehouse import read_table
        from llmops.processes import wait_until

        with contextlib.suppress(LlmopsError):  # fewer rows: the mismatch is reported below
            wait_until(lambda: len(read_table(settings.lakehouse, "inference_log"))
                       >= sent_through_gateway, timeout=60, interval=0.5,
                       what=f"{sent_through_gateway} inference_log rows")
        rows = read_table(settings.lakehouse, "inference_log")
        ids = rows["client_request_id"].dropna()
        ids = ids[ids.str.startswith(("warm-gw-", "gateway-"))]
        exact = (len(rows) == sent_through_gateway == len(ids) and ids.is_unique
                 and rows["request_id"].is_unique)
        print(f"inference_log: {len(rows)} rows for {sent_through_gateway} gateway requests, "
              f"{len(ids)} with a client id sent, client ids unique: {ids.is_unique}, "
              f"server ids unique: {rows['request_id'].is_unique}: "
              f"{'OK' if exact else 'MISMATCH'}")
        print(f"write-ahead log: peak {wal.peak / 1e6:.2f} MB during the run, "
              f"{wal.last / 1e6:.2f} MB at the end")
        write_json(args.json_out, {
            "table": [{"concurrency": c, "model": m, **{s: r[s] for s in r}} for c, m, r in table],
            "cpu": cpu_rows, "gateway_pids": gateway_pids, "vllm_api_pids": api_pids,
            "log_rows": len(rows), "gateway_requests": sent_through_gateway,
            "wal_peak_bytes": wal.peak, "wal_end_bytes": wal.last})
        if failed_any:
            print(f"gateway log: {work / 'gateway.log'}; engine log: {work / 'engine.log'}")
        return 0 if exact and not failed_any else 1
    finally:
        for proc in procs:
            stop_process_tree(proc, grace_s=30)
        if engine:
            engine.stop()


if __name__ == "__main__":
    sys.exit(main())
