"""A real vLLM engine (CPU build, the offline tiny model) started once per session,
and gateways run as real processes (``llmops serve``) in front of it."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmops.processes import start_process, stop_process_tree, wait_for_http
from tests.conftest import REPO, free_port
from tests.otlp_receiver import OtlpReceiver

# Secrets the gateway's environment may hold; the session engine starts with them set, and
# tests/serving/test_engine_isolation.py checks that none of them reached it.
CANARY_SECRETS = {
    "LLMOPS_API_KEYS": "canary-gateway-key",
    "OPENAI_API_KEY": "sk-canary-openai",
    "AWS_SECRET_ACCESS_KEY": "canary-aws-secret",
    "MLFLOW_TRACKING_PASSWORD": "canary-mlflow-password",
    "VLLM_API_KEY": "canary-not-the-engine-key",
}


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP trace receiver for the session: the session engine exports its spans to it,
    and so do the gateways a test points at it (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory,
           otlp_receiver: OtlpReceiver) -> Iterator:
    """The session's engine (an :class:`llmops.serving.engine.Engine`), started with
    ``CANARY_SECRETS`` in the environment; its key is exported as ``LLMOPS_ENGINE_API_KEY`` for
    the session, so that gateways started with ``engine.url`` (they inherit it) can reach it.
    It exports its request spans (vLLM's ``--otlp-traces-endpoint``) to ``otlp_receiver``."""
    from llmops.models import ensure_tiny_model
    from llmops.serving.config import EngineConfig
    from llmops.serving.engine import Engine

    cfg = EngineConfig(port=free_port(), max_model_len=2048, served_model_name="base",
                       max_lora_rank=16, start_timeout_s=600,
                       otlp_traces_endpoint=otlp_receiver.url)
    folder = tmp_path_factory.mktemp("engine")
    engine = Engine(cfg, str(ensure_tiny_model(models_dir, REPO / "docs")), folder / "engine.log",
                    state_dir=folder)
    saved = {name: os.environ.get(name) for name in [*CANARY_SECRETS, cfg.api_key_env]}
    os.environ.update(CANARY_SECRETS)
    try:
        engine.start()
    finally:
        for name in CANARY_SECRETS:
            _restore(name, saved[name])
    assert engine.api_key
    os.environ[cfg.api_key_env] = engine.api_key
    yield engine
    _restore(cfg.api_key_env, saved[cfg.api_key_env])
    engine.stop()


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@pytest.fixture(scope="session")
def engine_url(engine) -> str:
    """The session engine's root URL (no ``/v1``)."""
    return engine.url.removesuffix("/v1")


def write_endpoint(project: Path, engine_url: str, port: int, **gateway) -> None:
    extra = "".join(f"  {k}: {v}\n" for k, v in gateway.items())
    (project / "serving").mkdir(exist_ok=True)
    (project / "serving" / "endpoint.yaml").write_text(
        f"engine:\n  url: {engine_url}/v1\n  served_model_name: base\n"
        f"gateway:\n  host: 127.0.0.1\n  port: {port}\n  max_tokens_cap: 64\n"
        f"  max_body_bytes: 65536\n  log_flush_interval_s: 0.2\n  upstream_timeout_s: 30\n{extra}"
    )


class GatewayProcess:
    """``llmops serve`` in a subprocess (its engine already running)."""

    def __init__(self, project: Path, port: int, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.project, self.port = project, port
        self.url = f"http://127.0.0.1:{port}"
        full_env = {**os.environ, **(env or {})}
        for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            full_env.pop(var, None)
        self.log_path = project / f"gateway-{port}.log"
        self.proc = start_process(
            [str(Path(sys.executable).parent / "llmops"), "serve", "--port", str(port), *args],
            self.log_path, cwd=project, env=full_env)

    def wait_ready(self, timeout: float = 120) -> GatewayProcess:
        wait_for_http(self.url + "/healthz", timeout=timeout, proc=self.proc,
                      log_path=self.log_path, interval=0.3, what="the gateway's /healthz",
                      error=RuntimeError)
        return self

    def output(self) -> str:
        return (self.project / f"gateway-{self.port}.log").read_text(errors="replace")

    def diagnosis(self) -> str:
        """What the gateway says about its log, for a failing assertion's message: its
        write-ahead log's backlog and flush failures (``/metrics``), the segments its log
        folder still holds and its output's tail."""
        from llmops.serving.server import default_instance

        try:
            metrics = httpx.get(self.url + "/metrics", timeout=10).text
            wal = "\n".join(line for line in metrics.splitlines()
                            if line.startswith("llmops_log_"))
        except httpx.HTTPError as exc:
            wal = f"/metrics: {exc!r}"
        state = self.project / ".llmops" / "dev"
        folder = state / "wal" / default_instance(state, self.port)
        waiting = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.jsonl"))
        return (f"gateway :{self.port}\n{wal}\nsegments waiting: {waiting[:20]}\n"
                f"output (tail):\n{self.output()[-3000:]}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        stop_process_tree(self.proc, grace_s=60)


@pytest.fixture
def start_gateway(project: Path, engine_url: str):
    started: list[GatewayProcess] = []

    def start(port: int | None = None, env: dict[str, str] | None = None, wait: bool = True,
              **gateway) -> GatewayProcess:
        port = port or free_port()
        write_endpoint(project, engine_url, port, **gateway)
        gw = GatewayProcess(project, port, env)
        started.append(gw)
        return gw.wait_ready() if wait else gw

    yield start
    for gw in started:
        gw.stop()


def read_rows(project: Path, table: str, env: str = "dev"):
    from llmops.lakehouse import read_table

    return read_table(project / ".llmops" / env / "lakehouse", table)


def wait_rows(project: Path, table: str, count: int, timeout: float = 30, env: str = "dev"):
    """The table once it holds ``count`` rows, or as it is at the deadline (the caller's
    assertion then says what is missing)."""
    deadline = time.time() + timeout
    rows = read_rows(project, table, env)
    while len(rows) < count and time.time() < deadline:
        time.sleep(0.2)
        rows = read_rows(project, table, env)
    return rows
