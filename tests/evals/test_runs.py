"""Evaluation runs on a real MLflow store, with the registered RAG chain."""

from __future__ import annotations

import json
import string
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

# Reference answers written by hand from the docs (data the chain under test did not write),
# with the page each answer is on.
REFERENCES = [
    ("How do I promote a chain to production?",
     "Run llmops chains promote docs-qa --alias production.", "docs/chains.md"),
    ("What does llmops index update do?",
     "It embeds new and changed chunks and deletes stale ones in the Chroma collection.",
     "docs/indexing.md"),
    ("Which Python version does llmops need?", "Python 3.11 or newer.", "docs/installation.md"),
    ("What does llmops serve start?",
     "The vLLM engine behind the OpenAI-compatible gateway.", "docs/serving.md"),
]
QUESTIONS = [(q, source) for q, _, source in REFERENCES]


@pytest.fixture
def staged(settings, project: Path, docs_indexed):
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=settings)
    return settings


def reference_dataset(path: Path) -> Path:
    """The hand-written references as an evaluation dataset."""
    path.write_text("".join(json.dumps({"id": f"r{i}", "question": q, "expected": a,
                                        "source": src}) + "\n"
                            for i, (q, a, src) in enumerate(REFERENCES)))
    return path


def words(text: str) -> list[str]:
    """SQuAD's normalisation, written out here independently of llmops' scorer."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return [w for w in text.split() if w not in ("a", "an", "the")]


def squad_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1."""
    pred, gold = words(prediction), words(reference)
    if not pred or not gold:
        return float(pred == gold)
    common = sum(min(pred.count(w), gold.count(w)) for w in set(pred))
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def test_eval_run_scores_logs_and_records(staged, project: Path) -> None:
    data = reference_dataset(project / "answers.jsonl")
    golden = project / "golden.jsonl"
    golden.write_text(json.dumps({"question": QUESTIONS[0][0], "expected": "no such words",
                                  "source": "docs/chains.md"}) + "\n")
    report = evaluate_chain("docs-qa@staging", [data, golden], staged, concurrency=2)
    assert report.rows == {"answers": 4, "golden": 1}
    run = MlflowClient().get_run(report.run_id)
    assert run.data.tags["llmops.eval.model_uri"] == "models:/docs-qa/1"

    # the per-example table holds the chain's own answers (it is deterministic) ...
    nested = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{report.run_id}' "
                                              "and attributes.run_name = 'answers'",
                                output_format="list")
    assert len(nested) == 1
    table = mlflow.load_table("examples/answers.json", run_ids=[nested[0].info.run_id])
    assert list(table["example_id"]) == ["r0", "r1", "r2", "r3"]
    for row in table.itertuples():
        assert row.answer == invoke("docs-qa@staging", row.question, staged)["answer"]
    # ... scored against the references: each score is what it must be for that answer
    for row, (_, reference, source) in zip(table.itertuples(), REFERENCES, strict=True):
        assert row.expected == reference
        assert row.token_f1 == pytest.approx(squad_f1(row.answer, reference))
        assert row.exact_match == float(words(row.answer) == words(reference))
        assert row.source_hit == float(Path(source).name in row.sources)
    # the retriever finds the page each reference answer is on
    assert list(table["source_hit"]) == [1.0, 1.0, 1.0, 1.0]
    got = report.metrics["answers"]
    assert got["token_f1"] == pytest.approx(table["token_f1"].mean())
    assert got["source_hit"] == 1.0 and got["exact_match"] == 0.0
    assert got["answer_length"] == pytest.approx(
        sum(len(a.split()) for a in table["answer"]) / 4)
    assert run.data.metrics["answers.token_f1"] == pytest.approx(got["token_f1"])
    assert report.metrics["golden"]["exact_match"] == 0.0

    rows = read_table(staged.lakehouse, "eval_results")
    mine = rows[rows["run_id"] == report.run_id]
    assert set(mine["dataset"]) == {"answers", "golden"}
    assert set(mine["model_uri"]) == {"models:/docs-qa/1"}
    means = mine[mine["example_id"].isna()]
    f1 = means[(means["dataset"] == "answers") & (means["metric"] == "token_f1")]["value"]
    assert list(f1) == [pytest.approx(got["token_f1"])]
    # and each example's score, as in the table
    per_example = mine[(mine["dataset"] == "answers") & (mine["metric"] == "token_f1")
                       & mine["example_id"].notna()].sort_values("example_id")
    assert list(per_example["example_id"]) == ["r0", "r1", "r2", "r3"]
    assert list(per_example["value"]) == pytest.approx(list(table["token_f1"]))


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
