"""The main job, end to end on embedded defaults: ``llmops demo``.

Each step is a plain function call from the toolkit; the demo only wires them:
model, prompts, index, chain, the gate, serving with simulated users' feedback,
feedback datasets, a LoRA adapter fine-tuned on the corrections and hot-loaded,
the adapter's chain gated against production, and monitoring.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from llmops.config import Settings, load_settings

__all__ = ["DEMO_QUESTIONS", "run_demo"]

STEPS = 9
# questions from the golden set; simulated users know the expected answers
DEMO_QUESTIONS = [
    "How do I promote a chain to production?",
    "What does llmops prompts sync do?",
]


def _say(echo: Callable[[str], None], step: int, text: str) -> None:
    echo(f"[{step}/{STEPS}] {text}")


def _golden(settings: Settings, count: int) -> list[dict[str, Any]]:
    path = settings.root / "evals" / "golden.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    by_question = {r["question"]: r for r in rows}
    first = [by_question[q] for q in DEMO_QUESTIONS if q in by_question]
    return (first + [r for r in rows if r["question"] not in DEMO_QUESTIONS])[:count]


def run_demo(
    settings: Settings | None = None,
    echo: Callable[[str], None] = print,
    with_serving: bool = True,
    users: int = 12,
) -> dict[str, object]:
    """The whole loop; ``with_serving=False`` stops after the first gate."""
    from llmops.chains import invoke, log_chain
    from llmops.evals import run_gate
    from llmops.indexing import update_index
    from llmops.models import ensure_tiny_model
    from llmops.prompts import get_version, list_prompts, set_alias, sync_prompts

    settings = settings or load_settings()
    _say(echo, 1, f"offline model: {ensure_tiny_model(settings.models_dir, settings.root / 'docs')}")

    report = sync_prompts(settings)
    _say(echo, 2, f"prompts: {len(report.registered)} registered, {len(report.unchanged)} unchanged")
    aliases = {i.name: i.aliases for i in list_prompts(settings)}
    if "production" not in aliases.get("qa", {}):
        latest = int(get_version("qa", settings).version)
        set_alias("qa", "production", latest, settings)
        echo(f"      qa@production -> qa/{latest}")

    indexed = update_index(settings, progress=False)
    _say(echo, 3, f"index '{indexed.collection}': {indexed.summary()}")

    logged = log_chain(settings.root / "chains" / "docs_qa.py", alias="staging", settings=settings)
    _say(echo, 4, f"chain: registered {logged.name}/{logged.version} @staging "
                  f"({logged.prompt_uri}, index {indexed.index_version})")
    answers = {}
    for question in DEMO_QUESTIONS:
        answer = invoke(f"{logged.name}@staging", question, settings)
        answers[question] = answer
        echo(f"      Q: {question}\n      A: {answer['answer']!r}\n"
             f"      sources: {', '.join(answer['sources'])} (prompt {answer['prompt']})")

    gate = run_gate(logged.name, settings)
    _say(echo, 5, f"gate: {logged.name}/{gate.candidate} "
                  f"{'passed: now @production' if gate.passed else 'rejected'}"
                  f"{_scores(gate.candidate_report)}")
    for reason in gate.reasons:
        echo(f"      - {reason}")
    result: dict[str, object] = {"chain": logged, "answers": answers, "gate": gate}
    if not gate.passed:
        from llmops.errors import EvaluationError

        raise EvaluationError(f"the gate rejected {logged.name}/{gate.candidate}, so nothing is in "
                              "production to serve: see the reasons above and evals/gate.yaml")
    if not with_serving:
        return result
    with serving(settings, echo) as url:
        result["served"] = _serve_steps(settings, url, logged.name, users, echo)
    return result


def _scores(report: Any) -> str:
    if report is None:
        return ""
    parts = [f"{name} token F1 {values.get('token_f1', 0):.3f}"
             for name, values in report.metrics.items()]
    return f" ({'; '.join(parts)})" if parts else ""


def _serve_steps(settings: Settings, url: str, chain: str, users: int,
                 echo: Callable[[str], None]) -> dict[str, object]:
    """Steps 6-9, against the running endpoint."""
    import httpx
    import openai

    from llmops.chains import log_chain
    from llmops.evals import run_gate, run_monitor, token_f1
    from llmops.feedback import build_dataset
    from llmops.finetune import finetune, promote_adapter

    out: dict[str, object] = {}
    with httpx.Client(base_url=url, timeout=300) as http:
        # 6: users ask through the gateway and say what they think
        given = {"up": 0, "down": 0}
        for row in _golden(settings, users):
            body = http.post(f"/v1/chains/{chain}/invoke", json={"question": row["question"]})
            body.raise_for_status()
            answer = body.json()
            f1 = token_f1(answer["answer"], row["expected"])
            good = f1 >= 0.5
            feedback = {"request_id": answer["request_id"], "rating": 1 if good else -1,
                        "score": 5 if good else 2, "user": "demo-user", "source": "demo"}
            if not good:
                feedback["correction"] = row["expected"]
            http.post("/v1/feedback", json=feedback).raise_for_status()
            given["up" if good else "down"] += 1
            echo(f"      chain Q: {row['question']}\n      A: {answer['answer']!r} "
                 f"(request {answer['request_id']}, versions {answer['versions']})\n"
                 f"      user: {'thumbs up' if good else 'thumbs down + correction'}")
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        chat = client.chat.completions.create(
            model="base", max_tokens=16,
            messages=[{"role": "user", "content": "What does llmops serve start?"}])
        echo(f"      openai client: {chat.choices[0].message.content!r}")
        _say(echo, 6, f"serving: {users} chain answers, {given['up']} thumbs up, "
                      f"{given['down']} down with corrections")
        _wait_logged(settings, users)

        # 7: feedback datasets
        data_dir = settings.state_dir / "datasets"
        built = {kind: build_dataset(kind, data_dir / f"feedback-{kind}.jsonl", settings)
                 for kind in ("eval", "sft", "kto")}
        _say(echo, 7, "feedback datasets: " + ", ".join(
            f"{kind} {r.rows} rows" for kind, r in built.items()) + f" (in {data_dir})")

        # 8: a LoRA adapter from the corrections, evaluated against the base, hot-loaded
        tuned = finetune(settings, data=built["sft"].out, progress=False,
                         config=_demo_finetune_config(settings))
        promote_adapter(tuned.model_name, "production", tuned.version, settings)
        loaded = http.post("/admin/adapters/load", json={"name": tuned.model_name})
        loaded.raise_for_status()
        served = loaded.json()["loaded"]["model"]
        m = tuned.metrics
        _say(echo, 8, f"fine-tuned {tuned.model_name}/{tuned.version} ({tuned.method}, "
                      f"{tuned.train_rows} rows): token F1 base {m.get('eval_base_token_f1', 0):.3f}"
                      f" -> adapter {m.get('eval_adapter_token_f1', 0):.3f}; "
                      f"hot-loaded as {served}")
        reply = client.chat.completions.create(
            model=served, max_tokens=24,
            messages=[{"role": "user", "content": DEMO_QUESTIONS[0]}])
        echo(f"      {served}: {reply.choices[0].message.content!r}")
        out["adapter"] = tuned

    # 9: the adapter's chain as the candidate, through the gate; then monitoring
    candidate = log_chain(settings.root / "chains" / "docs_qa_tuned.py", name=chain,
                          alias="staging", settings=settings)
    gate = run_gate(chain, settings)
    _say(echo, 9, f"gate: {chain}/{candidate.version} (adapter {tuned.model_name}/{tuned.version})"
                  f" vs production {gate.baseline}: {'passed' if gate.passed else 'rejected'}"
                  f"{_scores(gate.candidate_report)}")
    for reason in gate.reasons:
        echo(f"      - {reason}")
    monitor = run_monitor(settings)
    overall = monitor.overall
    echo(f"      monitor: {overall['requests']} requests, thumbs-up rate "
         f"{overall['thumbs_up_rate'] if overall['thumbs_up_rate'] is not None else '-'}, "
         f"{'OK' if monitor.ok else 'ALERT: ' + '; '.join(monitor.breaches)} (plot {monitor.plot})")
    out.update(gate=gate, monitor=monitor)
    return out


def _demo_finetune_config(settings: Settings) -> Any:
    """``finetune/lora.yaml`` with more epochs: a dozen corrections teach the tiny model little."""
    from llmops.finetune import load_finetune_config

    cfg = load_finetune_config(None, settings)
    training = cfg.training.model_copy(update={"epochs": max(cfg.training.epochs, 30),
                                               "learning_rate": max(cfg.training.learning_rate,
                                                                    5e-3)})
    return cfg.model_copy(update={"training": training})


def _wait_logged(settings: Settings, count: int, timeout: float = 60) -> None:
    """The gateway commits its log in the background; wait for the chain requests to land."""
    import time

    from llmops.lakehouse import read_table

    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(read_table(settings.lakehouse, "feedback")) >= count:
            return
        time.sleep(0.5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(settings: Settings, echo: Callable[[str], None]) -> Iterator[str]:
    """``llmops serve`` (vLLM + gateway) on free ports for the block; yields the gateway URL."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

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
    echo(f"      starting vLLM and the gateway (log: {log_path}) ...")
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
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        echo("      engine and gateway stopped")
