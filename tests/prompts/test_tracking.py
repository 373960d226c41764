from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient

from llmops.errors import PromptVariableError
from llmops.prompts import PromptTemplate, compare_prompts, sync_prompts, try_prompt

CONTEXT = "An alias names one version of a prompt or model, such as @production."
INPUTS = [
    {"question": "What is a chain?", "context": CONTEXT},
    {"question": "How do aliases work?", "context": CONTEXT},
]


def test_try_a_registered_version_logs_a_run(settings) -> None:
    sync_prompts(settings)
    trial = try_prompt("qa/1", INPUTS, settings=settings)
    assert trial.prompt == "qa" and trial.prompt_version == "1"
    assert list(trial.results["question"]) == [i["question"] for i in INPUTS]
    assert all(o.strip() for o in trial.outputs)
    # greedy decoding (the tiny local model at temperature 0): the same answers a second time
    assert try_prompt("qa/1", INPUTS, settings=settings).outputs == trial.outputs
    assert (trial.results["latency_ms"] > 0).all()

    run = mlflow.get_run(trial.run_id)
    assert run.data.params["prompt_name"] == "qa"
    assert run.data.params["prompt_version"] == "1"
    assert run.data.metrics["latency_ms_p50"] > 0
    table = json.loads(
        open(mlflow.artifacts.download_artifacts(run_id=trial.run_id,
                                                 artifact_path="prompt_trial.json")).read()
    )
    assert table["columns"] == ["question", "context", "output", "latency_ms"]
    assert [row[2] for row in table["data"]] == trial.outputs
    linked = MlflowClient().get_run(trial.run_id).data.tags.get("mlflow.linkedPrompts", "")
    assert '"qa"' in linked


def test_try_a_draft(settings) -> None:
    draft = [{"role": "user", "content": "{{context}}\nBriefly: {{question}}"}]
    trial = try_prompt(draft, INPUTS, settings=settings)
    assert trial.prompt_version == "draft"
    run = mlflow.get_run(trial.run_id)
    assert run.data.params["prompt_version"] == "draft"
    assert "draft_template.json" in {a.path for a in MlflowClient().list_artifacts(trial.run_id)}


def test_bad_inputs_create_no_run(settings) -> None:
    with pytest.raises(PromptVariableError, match="missing question"):
        try_prompt(PromptTemplate.draft("Q: {{question}}"), [{"q": "x"}], settings=settings)


def test_compare_versions_side_by_side(settings, project) -> None:
    sync_prompts(settings)
    path = project / "prompts" / "qa.yaml"
    path.write_text(path.read_text().replace("Question:", "Q:"))
    sync_prompts(settings)
    table = compare_prompts(["qa/1", "qa/2", "{{context}} Answer: {{question}}"], INPUTS,
                            settings=settings)
    assert list(table["question"]) == [i["question"] for i in INPUTS]
    for label in ("qa/1", "qa/2", "draft/draft"):
        assert label in table.columns and f"{label} latency_ms" in table.columns
    parent = mlflow.get_run(table.attrs["run_id"])
    assert parent.data.params["prompts"] == "qa/1, qa/2, draft/draft"
    children = MlflowClient().search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 3
