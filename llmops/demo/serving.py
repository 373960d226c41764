"""``llmops serve`` (vLLM + gateway) in a child process for the demo's serving steps."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmops.config import Settings
from llmops.errors import LlmopsError
from llmops.processes import free_port, start_process, stop_process_tree, wait_for_http
from llmops.yamlfile import read_yaml_mapping

__all__ = ["Endpoint", "serving", "wait_for_rows"]


class Endpoint:
    """A started ``llmops serve``; ``wait_ready()`` returns its URL once it answers."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Any, timeout: float,
                 echo: Callable[[str], None]) -> None:
        self.proc, self.url, self.log_path = proc, url, log_path
        self.deadline = time.monotonic() + timeout
        self.echo = echo
        self.ready = False

    def wait_ready(self) -> str:
        if not self.ready:
            wait_for_http(self.url + "/readyz", timeout=max(0.0, self.deadline - time.monotonic()),
                          proc=self.proc, log_path=self.log_path, interval=1.0,
                          what=f"llmops serve's gateway to answer {self.url}/readyz")
            self.ready = True
        self.echo(f"      gateway ready at {self.url}")
        return self.url


def _endpoint_file(settings: Settings, gateway: dict[str, Any], engine_args: list[str]) -> Path:
    """The project's endpoint settings with ``gateway`` laid over them and ``engine_args``
    added to the engine's, in the state folder."""
    import yaml

    from llmops.serving.config import ENDPOINT_FILE

    source = settings.root / ENDPOINT_FILE
    raw = read_yaml_mapping(source, what="endpoint config", missing_ok=True)
    raw["gateway"] = {**(raw.get("gateway") or {}), **gateway}
    engine = raw["engine"] = dict(raw.get("engine") or {})
    own = list(engine.get("extra_args") or [])
    engine["extra_args"] = own + [arg for arg in engine_args if arg not in own]
    out = settings.state_dir / "demo" / "endpoint.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {source} for the demo, with: {gateway}, engine arguments {engine_args}\n"
                   + yaml.safe_dump(raw), encoding="utf-8")
    return out


@contextlib.contextmanager
def serving(settings: Settings, echo: Callable[[str], None], timeout: float = 900,
            gateway: dict[str, Any] | None = None,
            engine_args: tuple[str, ...] = ()) -> Iterator[Endpoint]:
    """``llmops serve`` on free ports for the block, started at once (the engine loads while
    the block goes on); ``wait_ready()`` on what it yields gives the gateway URL.

    ``gateway`` overrides fields of the endpoint file's ``gateway`` section for this run;
    ``engine_args`` are more vLLM arguments for its engine.
    """
    gport, eport = free_port(), free_port()
    log_path = settings.state_dir / "logs" / "demo-serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    config = (["--config", str(_endpoint_file(settings, gateway or {}, list(engine_args)))]
              if gateway or engine_args else [])
    # with_parent: a demo killed (or stopped by SIGTERM) runs no cleanup, so the kernel stops
    # serve, and serve its engine
    proc = start_process(
        [sys.executable, "-m", "llmops.cli.main", "serve", "--env", settings.env,
         *config, "--port", str(gport), "--engine-port", str(eport)],
        log_path, cwd=settings.root, env=env, append=False, with_parent=True)
    url = f"http://127.0.0.1:{gport}"
    echo(f"      starting vLLM and the gateway in the background (log: {log_path})")
    try:
        yield Endpoint(proc, url, log_path, timeout, echo)
    finally:
        # the gateway stops its engine on SIGTERM; what outlives the grace period is killed
        stop_process_tree(proc, grace_s=120, kill_wait_s=30)
        echo("      engine and gateway stopped")


def wait_for_rows(settings: Settings, table: str, count: int, timeout: float = 60) -> int:
    """Wait until ``table`` holds ``count`` rows (the gateway commits in the background).

    Returns the count; raises when the deadline passes first.
    """
    from llmops.lakehouse import read_table

    deadline = time.monotonic() + timeout
    while True:
        have = len(read_table(settings.lakehouse, table))
        if have >= count:
            return have
        if time.monotonic() > deadline:
            raise LlmopsError(f"the gateway logged {have} of {count} {table} rows in {timeout:.0f} s")
        time.sleep(0.5)
