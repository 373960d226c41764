"""A real vLLM engine (CPU build, the offline tiny model) started once per session,
and gateways run as real processes (``llmops serve``) in front of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port


@pytest.fixture(scope="session")
def engine_url(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from llmops.models import ensure_tiny_model
    from llmops.serving.config import EngineConfig
    from llmops.serving.engine import Engine

    cfg = EngineConfig(port=free_port(), max_model_len=2048, served_model_name="base",
                       max_lora_rank=16, start_timeout_s=600)
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    engine = Engine(cfg, str(ensure_tiny_model(models_dir, REPO / "docs")), log)
    engine.start()
    yield engine.url.removesuffix("/v1")
    engine.stop()


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
        self.log = open(project / f"gateway-{port}.log", "ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "llmops"), "serve", "--port", str(port), *args],
            cwd=project, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120) -> GatewayProcess:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"gateway not up after {timeout} s: {self.output()[-3000:]}")

    def output(self) -> str:
        return (self.project / f"gateway-{self.port}.log").read_text(errors="replace")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


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
    deadline = time.time() + timeout
    rows = read_rows(project, table, env)
    while len(rows) < count and time.time() < deadline:
        time.sleep(0.2)
        rows = read_rows(project, table, env)
    return rows
