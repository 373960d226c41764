"""The first half of batch inference with vLLM in the job: the chain with its chat model
deferred gives each row the exact request its model would get (no Ray, no engine here;
tests/serving/test_vllm_batch.py runs the whole job)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from llmops.errors import ChatModelError

QUESTIONS = ["How do I promote a chain to production?", "",
             "Which Delta table logs every request the gateway serves?"]


def test_each_row_carries_the_request_the_chain_would_send(production_chain, settings, models_dir,
                                                          project) -> None:
    from llmops.batch import engine_model
    from llmops.chains import invoke
    from llmops.chains.workers import PromptWorker

    model, adapter = engine_model(settings, "docs-qa@production")
    assert adapter is None and model.startswith(str(models_dir / "tiny-"))
    out = PromptWorker(settings, "docs-qa", "1").process(pd.DataFrame({"question": QUESTIONS}))
    assert list(out["chain_version"]) == ["1"] * 3 and out["answer"].isna().all()
    assert out.loc[1, "error"] == "ValueError: the question is empty"
    assert pd.isna(out.loc[1, "_llm_request"]) and pd.isna(out.loc[1, "sources"])
    # the prompt version's own model parameters win over the environment's (max_tokens 8)
    params = yaml.safe_load((project / "prompts" / "qa.yaml").read_text())["model_parameters"]
    for i in (0, 2):
        direct = invoke("docs-qa@production", QUESTIONS[i], settings)
        request = json.loads(out.loc[i, "_llm_request"])
        # exactly the messages the chain sends its model, with the chain's sampling settings
        assert request == {"messages": direct["messages"], **params}
        assert pd.isna(out.loc[i, "error"])
        assert json.loads(out.loc[i, "sources"]) == direct["sources"]
        assert out.loc[i, "prompt_version"] == direct["prompt"] == "qa/1"
        assert out.loc[i, "index_version"] == direct["index_version"]


def test_a_chain_that_rewrites_its_model_text_is_refused_row_by_row(production_chain, settings,
                                                                     project) -> None:
    from llmops.chains import log_chain
    from llmops.chains.workers import PromptWorker

    source = (project / "chains" / "docs_qa.py").read_text()
    assert "mlflow.models.set_model(ChainModel(chain))" in source
    shouting = source.replace(
        "mlflow.models.set_model(ChainModel(chain))",
        "from langchain_core.runnables import RunnableLambda\n"
        "chain = chain | RunnableLambda(lambda a: {**a, 'answer': a['answer'].upper()})\n"
        "mlflow.models.set_model(ChainModel(chain))")
    (project / "chains" / "shouting.py").write_text(shouting)
    logged = log_chain(project / "chains" / "shouting.py", name="shouting", settings=settings)
    out = PromptWorker(settings, "shouting", str(logged.version)).process(
        pd.DataFrame({"question": QUESTIONS[:1]}))
    assert out.loc[0, "error"].startswith("ChatModelError: the chain's answer is not its chat "
                                          "model's text")
    assert pd.isna(out.loc[0, "_llm_request"])


def test_a_chain_whose_model_is_an_endpoint_is_refused_before_the_job(production_chain, settings,
                                                                      project) -> None:
    from llmops.chains import log_chain
    from llmops.chains.batch import batch_run

    source = (project / "chains" / "docs_qa.py").read_text()
    remote = source.replace(
        '"retriever": {"collection": "docs", "k": 2},',
        '"retriever": {"collection": "docs", "k": 2},\n    "chat_model": {"kind": "openai", '
        '"model": "base", "base_url": "http://127.0.0.1:9/v1"},')
    assert remote != source
    (project / "chains" / "remote.py").write_text(remote)
    log_chain(project / "chains" / "remote.py", name="remote", alias="production",
              settings=settings)
    questions = project / "q.jsonl"
    questions.write_text(json.dumps({"question": QUESTIONS[0]}) + "\n")
    with pytest.raises(ChatModelError, match="is an endpoint .*only a local model"):
        batch_run("remote@production", questions, settings, project / "out", vllm=True)
    assert not (project / "out").exists()
