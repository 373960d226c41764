"""The inference endpoint on the GPU: vLLM (CUDA) with a ~1B random-weight Llama behind the gateway.

Runs on the accelerator machine (``benchmarks/gpu/run_h200.sh``): a chat completion, a streamed
one, a chain call and a feedback round trip, each checked in the lakehouse tables.
``LLMOPS_GPU_MODEL`` names the model folder (``benchmarks/gpu/build_model.py`` builds one);
``LLMOPS_GPU_SERVE_ARGS`` holds the engine options for ``llmops serve``.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import httpx
import openai
import pytest

from llmops.processes import start_process, stop_process_tree, wait_for_http
from tests.conftest import REPO, free_port
from tests.serving.conftest import wait_rows

DEFAULT_ARGS = ("--attention-backend TRITON_ATTN --gpu-memory-utilization 0.5 --dtype bfloat16 "
                "--max-num-seqs 256")

ASK_PROMPT = """description: Answer a question about llmops in one sentence.
variables: [question]
template:
  - role: user
    content: "Answer in one sentence: {{question}}"
model_parameters:
  temperature: 0.0
  max_tokens: 32
"""

ASK_CHAIN = '''import mlflow

from llmops.chains import ChainModel, build_qa_chain, chain_chat_model, chain_config, chain_prompt
from llmops.chains import chain_versions

CONFIG = {"prompt": "ask@production", "description": "Answers without retrieval."}
config = chain_config(CONFIG)
chain = build_qa_chain(chain_prompt(config), chain_chat_model(config), chain_versions(config))
mlflow.models.set_model(ChainModel(chain))
'''


def check_endpoint(project: Path, model: str, serve_args: str) -> dict[str, object]:
    """Start ``llmops serve`` on ``model`` and check chat, stream, chain and feedback."""
    from llmops.chains import log_chain, promote
    from llmops.config import load_settings
    from llmops.prompts import set_alias, sync_prompts

    (project / "prompts" / "ask.yaml").write_text(ASK_PROMPT)
    (project / "chains" / "ask_chain.py").write_text(ASK_CHAIN)
    settings = load_settings(root=project)
    sync_prompts(settings)
    set_alias("ask", "production", 1, settings)
    logged = log_chain(project / "chains" / "ask_chain.py", settings=settings)
    promote("ask-chain", "production", logged.version, settings=settings)

    gport, eport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    proc = start_process(
        [sys.executable, "-m", "llmops.cli.main", "serve", "--port", str(gport),
         "--engine-port", str(eport), "--model", model, *shlex.split(serve_args)],
        project / "serve.log", cwd=project, env=env, append=False)
    url = f"http://127.0.0.1:{gport}"
    try:
        wait_for_http(url + "/readyz", timeout=900, proc=proc, log_path=project / "serve.log",
                      interval=1.0, what="the endpoint to answer /readyz", error=AssertionError)
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        chat = client.chat.completions.with_raw_response.create(
            model="base", max_tokens=16, messages=[{"role": "user", "content": "Hello"}])
        assert chat.parse().usage.completion_tokens > 0
        # random weights: ask for a fixed length so the stream surely carries text
        stream = client.chat.completions.create(
            model="base", max_tokens=16, stream=True, temperature=0.0,
            extra_body={"ignore_eos": True, "min_tokens": 16},
            messages=[{"role": "user", "content": "Tell me about llmops"}])
        pieces = [c.choices[0].delta.content for c in stream
                  if c.choices and c.choices[0].delta.content is not None]
        assert len(pieces) >= 8
        answer = httpx.post(url + "/v1/chains/ask-chain/invoke", json={"question": "What is llmops?"},
                            timeout=120)
        assert answer.status_code == 200, answer.text
        rid = answer.json()["request_id"]
        fb = httpx.post(url + "/v1/feedback", json={"request_id": rid, "rating": 1, "score": 5})
        assert fb.status_code == 200
        rows = wait_rows(project, "inference_log", 3)
        assert {chat.headers["x-request-id"], rid} <= set(rows["request_id"])
        chain_row = rows[rows["request_id"] == rid].iloc[0]
        assert (chain_row["chain"], chain_row["status"]) == ("ask-chain", 200)
        feedback = wait_rows(project, "feedback", 1)
        assert list(feedback["request_id"]) == [rid]
        return {"chat": chat.parse().choices[0].message.content, "stream": "".join(pieces),
                "chain": answer.json()["answer"]}
    finally:
        stop_process_tree(proc, grace_s=120)


@pytest.mark.gpu
@pytest.mark.slow
def test_endpoint_on_the_gpu(project: Path, tmp_path: Path) -> None:
    model = os.environ.get("LLMOPS_GPU_MODEL")
    if not model:
        sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
        from build_model import build

        model = str(build(tmp_path / "llama-1b"))
    check_endpoint(project, model, os.environ.get("LLMOPS_GPU_SERVE_ARGS", DEFAULT_ARGS))
