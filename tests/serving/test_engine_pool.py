"""A gateway over several engines (``llmops serve --engine-url A --engine-url B``): affinity,
failover, health, and exactly-once logging across gateway replicas.

The engines are the stub engine (``stub_engine.py``), not vLLM: what is under test is the
gateway's choice of engine, its health checks and its log, which run the same over any
OpenAI-compatible server; two more vLLM engines would not fit beside the session's on 2 cores.
Each response's id names the engine that answered.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import httpx
import pytest

from llmops.processes import start_process, stop_process_tree, wait_for_http, wait_until
from tests.conftest import free_port
from tests.serving.conftest import GatewayProcess
from tests.serving.test_durability import load

STUB = Path(__file__).with_name("stub_engine.py")


class StubEngine:
    def __init__(self, folder: Path, key: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = folder / f"stub-{self.port}.log"
        self.proc = start_process([sys.executable, str(STUB), "--port", str(self.port)],
                                  self.log, env={**os.environ, "VLLM_API_KEY": key},
                                  new_session=True)  # its group: the stub and its "engine core"
        wait_for_http(f"http://127.0.0.1:{self.port}/health", timeout=30, proc=self.proc,
                      log_path=self.log, what="the stub engine", error=AssertionError)

    def kill(self) -> None:
        """kill -9, the engine and its child at once (a crashed host)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        stop_process_tree(self.proc, grace_s=5)


@pytest.fixture
def engines(tmp_path: Path):
    key = secrets.token_hex(16)
    started: list[StubEngine] = []

    def start(port: int | None = None) -> StubEngine:
        engine = StubEngine(tmp_path, key, port)
        started.append(engine)
        return engine

    start.key = key  # type: ignore[attr-defined]
    yield start
    for engine in started:
        engine.stop()


def pool_gateway(project: Path, key: str, urls: list[str], port: int | None = None,
                 **gateway: object) -> GatewayProcess:
    port = port or free_port()
    settings = {"engine_check_interval_s": 0.3, "readiness_cache_s": 0, "log_flush_interval_s": 0.2,
                **gateway}
    (project / "serving").mkdir(exist_ok=True)
    (project / "serving" / "endpoint.yaml").write_text(
        "engine:\n  served_model_name: base\n  enable_lora: false\n"
        f"gateway:\n  host: 127.0.0.1\n  port: {port}\n  max_tokens_cap: 64\n"
        + "".join(f"  {k}: {v}\n" for k, v in settings.items()))
    args = [arg for url in urls for arg in ("--engine-url", url)]
    return GatewayProcess(project, port, env={"LLMOPS_ENGINE_API_KEY": key},
                          args=tuple(args)).wait_ready()


def ask(url: str, text: str, user: str | None = None, system: str = "") -> httpx.Response:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}]
    return httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
        "model": "base", "max_tokens": 3, "messages": messages, **({"user": user} if user else {})})


def engine_of(resp: httpx.Response) -> str:
    """The port of the stub engine that answered (it names itself in the response's id)."""
    assert resp.status_code == 200, resp.text
    return resp.json()["id"].split("-")[1]


def test_a_pool_keeps_a_session_and_a_prompt_prefix_on_one_engine(project: Path, engines
                                                                   ) -> None:
    a, b = engines(), engines()
    gw = pool_gateway(project, engines.key, [a.url, b.url])
    try:
        by_user = {}
        for n in range(12):
            seen = {engine_of(ask(gw.url, f"turn {turn}", user=f"user-{n}")) for turn in range(3)}
            assert len(seen) == 1, f"user-{n}'s turns went to {seen}"
            by_user[n] = seen.pop()
        assert set(by_user.values()) == {str(a.port), str(b.port)}, by_user  # both serve
        # no user named: a long shared system prompt keeps different questions on one engine
        system = "You answer questions about llmops. " * 20  # past the 512 characters compared
        seen = {engine_of(ask(gw.url, f"question {n}", system=system)) for n in range(6)}
        assert len(seen) == 1
        ready = httpx.get(gw.url + "/readyz").json()
        assert ready["ready"] and ready["engines"] == {"serving": 2, "total": 2}
        assert a.url not in httpx.get(gw.url + "/readyz").text  # where engines are: not said
    finally:
        gw.stop()


def test_a_failed_engine_leaves_the_rotation_and_comes_back(project: Path, engines) -> None:
    a, b = engines(), engines()
    gw = pool_gateway(project, engines.key, [a.url, b.url])
    try:
        users = {engine_of(ask(gw.url, "hello", user=f"u{n}")): f"u{n}" for n in range(16)}
        on_a = users[str(a.port)]
        a.kill()
        # the next request of a's user is refused a connection there and answered by b
        assert engine_of(ask(gw.url, "still there?", user=on_a)) == str(b.port)
        ready = httpx.get(gw.url + "/readyz")
        assert ready.status_code == 200 and ready.json()["engines"] == {"serving": 1, "total": 2}
        b.kill()
        down = ask(gw.url, "anyone?", user=on_a)
        assert down.status_code == 503 and down.json()["error"]["type"] == "engine_unavailable"
        wait_until(lambda: httpx.get(gw.url + "/readyz").status_code == 503, timeout=10,
                   what="/readyz to say no engine answers", error=AssertionError)
        assert httpx.get(gw.url + "/readyz").json()["engine"] == "none of the 2 engines answers"
        engines(port=a.port)  # a again, on its address: the health check brings it back
        wait_until(lambda: httpx.get(gw.url + "/readyz").status_code == 200, timeout=10,
                   what="the restarted engine to rejoin", error=AssertionError)
        assert engine_of(ask(gw.url, "back?", user=on_a)) == str(a.port)
        log = gw.output()
        assert f"engine {a.url.removesuffix('/v1')} left the rotation" in log
        assert f"engine {a.url.removesuffix('/v1')} is back in the rotation" in log
    finally:
        gw.stop()
    # every answer and every 503 is in the log, once
    from tests.serving.conftest import wait_rows

    rows = wait_rows(project, "inference_log", 16 + 3)
    assert len(rows) == 19 and rows["request_id"].is_unique
    assert sorted(rows["status"].tolist()).count(503) == 1


def test_a_bad_engine_url_is_one_line_naming_the_setting(project: Path) -> None:
    from tests.conftest import run_cli

    out = run_cli("serve", "--port", str(free_port()), "--engine-url", "ftp://vllm:8000",
                  cwd=project)
    assert out.returncode != 0
    error = [line for line in out.stderr.splitlines() if "engine" in line and "url" in line]
    assert error and "ftp://vllm:8000" in error[0] and "Traceback" not in out.stderr, out.stderr


def test_two_replicas_on_s3_one_killed_under_load_log_everything_once(
        project: Path, engines, s3_env: str) -> None:
    """Two gateways over two engines, the tables on S3; one gateway kill -9'd under load and
    restarted (its write-ahead log replayed): every acknowledged request and feedback is in
    the tables exactly once. Feedback sent to the other replica for a request the first just
    answered (not yet in the table) is accepted too."""
    from llmops.lakehouse import read_table

    text = (project / "llmops.yaml").read_text().replace("  dev: {}", f"  dev:\n    lakehouse: {s3_env}")
    (project / "llmops.yaml").write_text(text)
    a_engine, b_engine = engines(), engines()
    urls = [a_engine.url, b_engine.url]
    port_a = free_port()
    gw_a = pool_gateway(project, engines.key, urls, port=port_a, log_flush_interval_s=1.0)
    # B waits up to 15 s for a request another replica answered (the default, 5 s, is short of
    # the restarted A's 3 s flush plus an S3 commit on a busy machine: CI saw a 404 once)
    gw_b = pool_gateway(project, engines.key, urls, log_flush_interval_s=1.0, feedback_wait_s=15.0)
    stop = threading.Event()
    acked: dict[str, list[str]] = {"a": [], "b": []}
    fb_acked: dict[str, list[str]] = {"a": [], "b": []}
    workers = [threading.Thread(target=load, daemon=True,
                                args=(gw.url, stop, acked[name], fb_acked[name], f"{name}{n}"))
               for name, gw in (("a", gw_a), ("b", gw_b)) for n in range(2)]
    restarted = None
    try:
        for w in workers:
            w.start()
        wait_until(lambda: len(acked["a"]) >= 30, timeout=120, what="30 requests acknowledged by A",
                   error=AssertionError)
        gw_a.kill9()
        killed_at = len(acked["a"])
        # restarted with a slower flush, so that its next answer stays out of the table a while
        restarted = pool_gateway(project, engines.key, urls, port=port_a, log_flush_interval_s=3.0)
        wait_until(lambda: len(acked["a"]) >= killed_at + 15, timeout=120,
                   what="15 requests acknowledged by the restarted A", error=AssertionError)
        # feedback to B for a request A answered a moment ago, not in the table yet: B waits
        fresh = ask(restarted.url, "just now")
        assert fresh.status_code == 200
        assert fresh.headers["x-request-id"] not in set(
            read_table(s3_env, "inference_log")["request_id"])
        cross = httpx.post(gw_b.url + "/v1/feedback", timeout=60, json={
            "request_id": fresh.headers["x-request-id"], "rating": 1})
        assert cross.status_code == 200, cross.text
        made_up = httpx.post(gw_b.url + "/v1/feedback", timeout=60, json={
            "request_id": f"{fresh.headers['x-request-id'][:12]}{'0' * 20}", "rating": 1})
        assert made_up.status_code == 404
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=60)
        for gw in (restarted, gw_b):
            if gw is not None:
                gw.stop()
    requests = {rid for side in acked.values() for rid in side}
    rows = read_table(s3_env, "inference_log")
    assert requests <= set(rows["request_id"]), f"lost {len(requests - set(rows['request_id']))}"
    assert rows["request_id"].is_unique, "a request was logged twice"
    feedback = {fid for side in fb_acked.values() for fid in side} | {cross.json()["feedback_id"]}
    fb = read_table(s3_env, "feedback")
    assert feedback <= set(fb["feedback_id"]) and fb["feedback_id"].is_unique
    assert len(acked["b"]) > 0 and len(requests) == len(acked["a"]) + len(acked["b"])
