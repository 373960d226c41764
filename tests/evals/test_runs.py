"""Evaluation runs on a real MLflow store, with the registered RAG chain."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from llmops.chains import invoke, log_chain
from llmops.errors import EvalDatasetError, EvaluationError
from llmops.evals import evaluate_chain
from llmops.indexing import update_index
from llmops.lakehouse import read_table
from llmops.prompts import set_alias, sync_prompts

QUESTIONS = [
    ("How do I promote a chain to production?", "docs/chains.md"),
    ("What does llmops index update do?", "docs/indexing.md"),
    ("Which Python version does llmops need?", "docs/installation.md"),
    ("What does llmops serve start?", "docs/serving.md"),
]


@pytest.fixture
def staged(settings, project: Path):
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=settings)
    return settings


def answers_dataset(path: Path, ref: str, settings) -> Path:
    """Expected answers taken from what ``ref`` says: as if users had rated them good."""
    rows = [{"question": q, "expected": invoke(ref, q, settings)["answer"], "source": s}
            for q, s in QUESTIONS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_run_scores_logs_and_records(staged, project: Path) -> None:
    data = answers_dataset(project / "answers.jsonl", "docs-qa@staging", staged)
    golden = project / "golden.jsonl"
    golden.write_text(json.dumps({"question": QUESTIONS[0][0], "expected": "no such words",
                                  "source": "docs/chains.md"}) + "\n")
    report = evaluate_chain("docs-qa@staging", [data, golden], staged, concurrency=2)
    got = report.metrics["answers"]
    # the chain is deterministic: it repeats the answers it gave
    assert got["token_f1"] == pytest.approx(1.0) and got["exact_match"] == pytest.approx(1.0)
    assert 0.0 <= got["source_hit"] <= 1.0 and got["latency_ms"] > 0 and got["answer_length"] > 0
    assert report.metrics["golden"]["exact_match"] == 0.0
    assert report.rows == {"answers": 4, "golden": 1}
    run = MlflowClient().get_run(report.run_id)
    assert run.data.metrics["answers.token_f1"] == pytest.approx(1.0)
    assert run.data.tags["llmops.eval.model_uri"] == "models:/docs-qa/1"
    table = read_table(staged.lakehouse, "eval_results")
    mine = table[table["run_id"] == report.run_id]
    assert set(mine["dataset"]) == {"answers", "golden"}
    assert set(mine["model_uri"]) == {"models:/docs-qa/1"}
    means = mine[mine["example_id"].isna()]
    f1 = means[(means["dataset"] == "answers") & (means["metric"] == "token_f1")]["value"]
    assert list(f1) == [pytest.approx(1.0)]
    # and each example's score: the four answers, each repeated exactly
    per_example = mine[(mine["dataset"] == "answers") & (mine["metric"] == "token_f1")
                       & mine["example_id"].notna()]
    assert len(per_example) == 4 and (per_example["value"] == 1.0).all()


def test_bad_datasets_fail_before_anything_is_logged(staged, project: Path) -> None:
    experiment = mlflow.get_experiment_by_name("test-project")
    before = len(mlflow.search_runs([experiment.experiment_id]))
    bad = project / "bad.jsonl"
    bad.write_text('{"question": "ok", "expected": "x"}\n{"question": \n')
    with pytest.raises(EvalDatasetError, match=r"bad.jsonl:2: not valid JSON"):
        evaluate_chain("docs-qa@staging", [bad], staged)
    bad.write_text('{"expected": "x"}\n')
    with pytest.raises(EvalDatasetError, match="'question' must be a non-empty string"):
        evaluate_chain("docs-qa@staging", [bad], staged)
    with pytest.raises(EvalDatasetError, match="does not exist"):
        evaluate_chain("docs-qa@staging", ["evals/nowhere.jsonl"], staged)
    with pytest.raises(EvaluationError, match="--endpoint"):
        evaluate_chain("docs-qa@staging", ["feedback"], staged, judge=True)
    assert len(mlflow.search_runs([experiment.experiment_id])) == before
    assert read_table(staged.lakehouse, "eval_results").empty


def test_feedback_dataset_may_be_empty(staged) -> None:
    report = evaluate_chain("docs-qa@staging", ["feedback"], staged)
    assert report.rows == {"feedback": 0} and report.metrics == {}
