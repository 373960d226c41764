"""The main job, end to end on embedded defaults: ``llmops demo``.

Each step is a plain function call from the toolkit; the demo only wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmops.config import Settings, load_settings

__all__ = ["DEMO_QUESTIONS", "run_demo"]

DEMO_QUESTIONS = [
    "How do I promote a chain to production?",
    "What does llmops prompts sync do?",
]


def run_demo(
    settings: Settings | None = None,
    echo: Callable[[str], None] = print,
    with_serving: bool = True,
) -> dict[str, object]:
    """Model, prompts, index, chain (log, register, invoke, promote), then serve and ask."""
    from llmops.chains import invoke, log_chain, promote
    from llmops.indexing import update_index
    from llmops.models import ensure_tiny_model
    from llmops.prompts import get_version, list_prompts, set_alias, sync_prompts

    settings = settings or load_settings()
    echo(f"[1/7] offline model: {ensure_tiny_model(settings.models_dir, settings.root / 'docs')}")

    report = sync_prompts(settings)
    echo(f"[2/7] prompts: {len(report.registered)} registered, {len(report.unchanged)} unchanged")
    aliases = {i.name: i.aliases for i in list_prompts(settings)}
    if "production" not in aliases.get("qa", {}):
        latest = int(get_version("qa", settings).version)
        set_alias("qa", "production", latest, settings)
        echo(f"      qa@production -> qa/{latest}")

    indexed = update_index(settings, progress=False)
    echo(f"[3/7] index '{indexed.collection}': {indexed.summary()}")

    chain_file = settings.root / "chains" / "docs_qa.py"
    logged = log_chain(Path(chain_file), alias="staging", settings=settings)
    echo(f"[4/7] chain: registered {logged.name}/{logged.version} @staging ({logged.prompt_uri}, "
         f"index {indexed.index_version})")

    answers = {}
    for question in DEMO_QUESTIONS:
        answer = invoke(f"{logged.name}@staging", question, settings)
        answers[question] = answer
        echo(f"[5/7] Q: {question}\n      A: {answer['answer']!r}\n"
             f"      sources: {', '.join(answer['sources'])} (prompt {answer['prompt']})")

    version = promote(logged.name, "production", logged.version, settings=settings)
    echo(f"[6/7] promoted {logged.name}/{version} to @production")

    served = serve_and_ask(settings, logged.name, echo) if with_serving else {}
    return {"chain": logged, "answers": answers, "served": served}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_and_ask(settings: Settings, chain: str, echo: Callable[[str], None]) -> dict[str, object]:
    """Start ``llmops serve`` (vLLM + gateway), ask through it, leave feedback, stop it."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import httpx
    import openai

    gport, eport = _free_port(), _free_port()
    log_path = settings.state_dir / "logs" / "demo-serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmops.cli.main", "serve", "--env", settings.env,
             "--port", str(gport), "--engine-port", str(eport)],
            cwd=settings.root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{gport}"
    echo(f"[7/7] serving: starting vLLM and the gateway (log: {log_path}) ...")
    try:
        deadline = time.time() + 900
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"llmops serve exited with {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("llmops serve was not ready after 900 s")
            time.sleep(1)
        echo(f"      gateway ready at {url}")
        results: dict[str, object] = {}
        with httpx.Client(base_url=url, timeout=300) as http:
            for question in DEMO_QUESTIONS:
                body = http.post(f"/v1/chains/{chain}/invoke", json={"question": question}).json()
                echo(f"      chain Q: {question}\n      A: {body['answer']!r} "
                     f"(request {body['request_id']}, versions {body['versions']})")
                thumbs = http.post("/v1/feedback", json={
                    "request_id": body["request_id"], "rating": -1,
                    "correction": "Use llmops chains promote NAME --alias production.",
                    "user": "demo"})
                results[question] = {"answer": body, "feedback": thumbs.status_code}
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        chat = client.chat.completions.create(
            model="base", max_tokens=16,
            messages=[{"role": "user", "content": "What does llmops serve start?"}])
        echo(f"      openai client: {chat.choices[0].message.content!r}")
        results["chat"] = chat.choices[0].message.content
        return results
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        echo("      engine and gateway stopped")
