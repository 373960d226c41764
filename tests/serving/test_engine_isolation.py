"""The engine lives and dies with its gateway, and only the gateway reaches it.

A real vLLM (CPU build, the tiny model), the session engine, for the key and environment
checks; for the kill -9 test, ``llmops serve`` starting its own engine under the real watchdog,
a stub engine in vLLM's place (``tests/serving/stub_engine.py``; why: at the test).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from llmops.models.devices import vllm_cpu_environment
from llmops.processes import running, wait_for_http, wait_until
from llmops.serving.config import EngineConfig
from llmops.serving.engine import Engine, EngineError, engine_command, engine_environment
from tests.conftest import free_port, run_cli
from tests.serving.conftest import CANARY_SECRETS, GatewayProcess


def status_of(url: str, key: str | None = None, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def proc_field(pid: int, name: str) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def group_members(pgid: int) -> list[int]:
    """Running (non-zombie) processes in process group ``pgid``."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(proc.name))
    return members


def engine_record(pid_file: Path, timeout: float = 30) -> dict:
    def record() -> dict | None:
        try:
            return json.loads(pid_file.read_text())
        except (OSError, ValueError):
            return None

    return wait_until(record, timeout=timeout, what=f"the engine's pid file at {pid_file}",
                      error=AssertionError)


# -- the session engine: its key and its environment --------------------------------------------
def test_the_engine_answers_only_with_its_key(engine, engine_url: str) -> None:
    assert status_of(engine_url + "/v1/models") == 401
    assert status_of(engine_url + "/v1/models", "not-the-key") == 401
    assert status_of(engine_url + "/v1/models", engine.api_key) == 200
    # routes vLLM's own VLLM_API_KEY check leaves open are closed too
    chat = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert status_of(engine_url + "/invocations", body=chat) == 401
    assert status_of(engine_url + "/tokenize", body={"model": "base", "prompt": "hi"}) == 401
    assert status_of(engine_url + "/invocations", engine.api_key, chat) == 200
    assert status_of(engine_url + "/health") == 200  # liveness only


def test_a_lora_load_without_the_key_is_refused(engine, engine_url: str, tmp_path: Path) -> None:
    body = {"lora_name": "intruder", "lora_path": str(tmp_path)}
    assert status_of(engine_url + "/v1/load_lora_adapter", body=body) == 401
    # the same load through the SageMaker route vLLM also mounts
    assert status_of(engine_url + "/adapters", body={"name": "intruder", "src": str(tmp_path)}) == 401
    assert status_of(engine_url + "/v1/unload_lora_adapter", body={"lora_name": "base"}) == 401


def test_the_engine_environment_holds_none_of_the_gateways_secrets(engine) -> None:
    guard = engine.proc.pid
    vllm = engine_record(engine.pid_file)["engine_pgid"]
    assert proc_field(vllm, "PPid") == str(guard)
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{vllm}/environ").read_bytes().decode().split("\0") if "=" in item)
    for name in CANARY_SECRETS.keys() - {"VLLM_API_KEY"}:
        assert name not in environ
    assert "LLMOPS_ENGINE_API_KEY" not in environ
    assert environ["VLLM_API_KEY"] == engine.api_key != CANARY_SECRETS["VLLM_API_KEY"]
    for pid in (guard, vllm):
        assert engine.api_key not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert "PATH" in environ and environ["VLLM_CPU_KVCACHE_SPACE"]
    # the CPU build caches Inductor's output (its AOT artifacts never load back)
    assert environ.get("VLLM_USE_AOT_COMPILE") == vllm_cpu_environment().get("VLLM_USE_AOT_COMPILE")


def test_the_engine_environment_takes_vllm_settings_from_the_gateways() -> None:
    cfg = EngineConfig()
    ours = engine_environment(cfg, "k", {})
    assert ours["VLLM_USE_AOT_COMPILE"] == "0"  # the CPU build is what this machine has
    theirs = engine_environment(cfg, "k", {"VLLM_USE_AOT_COMPILE": "1", "VLLM_API_KEY": "x"})
    assert (theirs["VLLM_USE_AOT_COMPILE"], theirs["VLLM_API_KEY"]) == ("1", "k")


def test_an_engine_command_runs_in_vllms_place() -> None:
    cfg = EngineConfig(port=8123, command=["srv", "--port", "{port}", "--model={model}",
                                           "--name", "{served_model_name}", "{host}"])
    assert engine_command(cfg, "m") == ["srv", "--port", "8123", "--model=m", "--name", "base",
                                        "127.0.0.1"]
    with pytest.raises(ValidationError, match=r"put \{port\} in it"):
        EngineConfig(command=["srv", "--port", "8123"])


# -- llmops serve with its own engine ------------------------------------------------------------
STUB_ENGINE = Path(__file__).with_name("stub_engine.py")


def write_own_engine_endpoint(project: Path, gateway_port: int, engine_port: int,
                              stub: bool = False) -> None:
    """An endpoint whose ``llmops serve`` starts its own engine: vLLM, or the stub engine."""
    command = (f"  command: [{sys.executable}, {STUB_ENGINE}, --host, '{{host}}', --port, "
               f"'{{port}}', --served-model-name, '{{served_model_name}}']\n" if stub else "")
    (project / "serving").mkdir(exist_ok=True)
    (project / "serving" / "endpoint.yaml").write_text(
        f"engine:\n  port: {engine_port}\n  max_model_len: 512\n  enable_lora: false\n"
        f"  cpu_kvcache_space_gib: 1\n  start_timeout_s: 600\n  extra_args: [--enforce-eager]\n"
        f"{command}"
        f"gateway:\n  host: 127.0.0.1\n  port: {gateway_port}\n  max_tokens_cap: 64\n"
        f"  log_flush_interval_s: 0.2\n  upstream_timeout_s: 60\n")


def wait_readyz(gw: GatewayProcess, timeout: float = 900) -> None:
    wait_for_http(gw.url + "/readyz", timeout=timeout, proc=gw.proc, interval=0.2,
                  log_path=gw.project / f"gateway-{gw.port}.log", error=AssertionError,
                  what="llmops serve (and its engine) to answer /readyz")


def test_the_engine_dies_with_a_killed_gateway_and_a_restart_serves(project: Path) -> None:
    # A stub engine (engine.command), not vLLM: what is under test is the watchdog and how
    # `llmops serve` starts, clears and stops its engine, which run the same for any command;
    # vLLM would cost two starts of ~30 s each. A real vLLM under the watchdog serves in the
    # session engine (Engine.start, above), and under `llmops serve` in tests/test_demo.py.
    import openai

    gport, eport = free_port(), free_port()
    write_own_engine_endpoint(project, gport, eport, stub=True)
    pid_file = project / ".llmops" / "dev" / f"engine-{eport}.pid"
    gw = GatewayProcess(project, gport, args=("--engine-port", str(eport)))
    try:
        wait_readyz(gw)
        record = engine_record(pid_file)
        guard, pgid = record["guard_pid"], record["engine_pgid"]
        assert running(guard) and len(group_members(pgid)) == 2  # the stub and its "engine core"
        assert proc_field(guard, "PPid") == str(gw.proc.pid)

        gw.kill9()
        with contextlib.suppress(AssertionError):  # which one outlived it: asserted next
            wait_until(lambda: not (running(guard) or group_members(pgid)), timeout=30,
                       what="the engine to die with its gateway", error=AssertionError)
        assert not running(guard), "the engine's watchdog outlived its gateway"
        assert not group_members(pgid), "the engine (or its engine core) outlived its gateway"
    finally:
        gw.stop()

    again = GatewayProcess(project, gport, args=("--engine-port", str(eport)))
    try:
        wait_readyz(again)
        record = engine_record(pid_file)
        assert record["guard_pid"] != guard
        client = openai.OpenAI(base_url=again.url + "/v1", api_key="none", max_retries=0,
                               timeout=120)
        reply = client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
        assert isinstance(reply.choices[0].message.content, str)
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert 1 <= reply.usage.completion_tokens <= 4
        new_pgid = record["engine_pgid"]
        # the engine dies under a running gateway: the gateway turns not ready, naming why
        os.killpg(new_pgid, signal.SIGKILL)
        deadline = time.time() + 30
        ready = httpx.get(again.url + "/readyz", timeout=10)
        while ready.status_code == 200 and time.time() < deadline:
            time.sleep(0.3)
            ready = httpx.get(again.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["engine"] in ("the engine process has exited",
                                          "the engine is unreachable")
    finally:
        again.stop()
    assert not group_members(new_pgid)  # a clean stop leaves nothing behind either
    assert not pid_file.exists()


# -- a port somebody else holds, and an engine of ours left behind ------------------------------
def test_serve_refuses_a_port_a_stranger_listens_on(project: Path) -> None:
    gport, eport = free_port(), free_port()
    write_own_engine_endpoint(project, gport, eport)
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", eport))
        stranger.listen()
        out = run_cli("serve", "--port", str(gport), "--engine-port", str(eport), cwd=project,
                      timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: port {eport} ")
    assert f"process {os.getpid()} " in last


def test_a_second_gateway_on_a_log_in_use_is_refused_before_its_engine_starts(
        project: Path, start_gateway) -> None:
    first = start_gateway(instance="shared")
    gport, eport = free_port(), free_port()
    write_own_engine_endpoint(project, gport, eport, stub=True)
    with (project / "serving" / "endpoint.yaml").open("a") as f:
        f.write("  instance: shared\n")  # the gateway section is the file's last
    out = run_cli("serve", cwd=project, timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the write-ahead log ") and "wal/shared is in use by process " \
        f"{first.proc.pid}" in last, last
    # refused before an engine was started, and the first gateway serves on
    state = project / ".llmops" / "dev"
    assert not (state / f"engine-{eport}.pid").exists()
    assert not (state / "logs" / "engine.log").exists()
    assert httpx.get(first.url + "/healthz", timeout=30).status_code == 200


def test_a_stale_engine_of_ours_is_stopped(tmp_path: Path) -> None:
    # Not vLLM: a listener whose command line is vLLM's for this port, left behind by a watchdog
    # that is gone (starting a real vLLM for this would cost a minute or two).
    port = free_port()
    code = ("import socket, time; s = socket.socket(); "
            f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port})); "
            "s.listen(); time.sleep(300)")
    stale = subprocess.Popen([sys.executable, "-c", code, "vllm.entrypoints.openai.api_server",
                              "--port", str(port)], start_new_session=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and nothing_listens(port):
            time.sleep(0.1)
        engine = Engine(EngineConfig(port=port), "unused", tmp_path / "engine.log",
                        state_dir=tmp_path)
        engine.pid_file.write_text(json.dumps({"guard_pid": 2 ** 22 + 1, "engine_pgid": stale.pid,
                                               "port": port, "started": time.time()}))
        engine._clear_port()
        assert stale.wait(timeout=30) == -signal.SIGTERM
        assert not engine.pid_file.exists()
        # the same listener with no pid file naming it is a stranger
        stranger = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        try:
            while time.time() < deadline and nothing_listens(port):
                time.sleep(0.1)
            with pytest.raises(EngineError, match=f"taken by process {stranger.pid} "):
                engine._clear_port()
        finally:
            stranger.kill()
            stranger.wait(10)
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait(10)


def nothing_listens(port: int) -> bool:
    """True while nothing listens on ``port`` yet."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
