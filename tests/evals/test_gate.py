"""The promotion gate's pass and fail paths, on a real MLflow registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from llmops.chains import log_chain, model_version, promote
from llmops.evals import GateConfig, MetricRule, run_gate
from llmops.indexing import update_index
from llmops.lakehouse import read_table
from tests.conftest import run_cli
from tests.evals.test_runs import reference_dataset, staged  # noqa: F401 - a fixture


def gate_config(dataset: Path) -> GateConfig:
    """Bars on the hand-written references: the page of each answer must be retrieved
    (source_hit, fixed at 0.75 for a first candidate), and token F1 must not fall."""
    return GateConfig(datasets=[str(dataset)], concurrency=2, metrics={
        "source_hit": MetricRule(threshold=0.75), "token_f1": MetricRule(),
        "latency_ms": MetricRule(higher_is_better=False, tolerance=100.0)})


def off_topic_chain(settings, project: Path) -> Path:
    """docs-qa reading a collection that holds one unrelated page: it cites the wrong page."""
    pages = project / "elsewhere"
    pages.mkdir()
    (pages / "weather.md").write_text("# Weather\n\nIt rains in April and snows in January.\n")
    update_index(settings, source=pages, collection="elsewhere", progress=False, record=False)
    text = (project / "chains" / "docs_qa.py").read_text()
    assert '"collection": "docs"' in text
    chain = project / "chains" / "docs_qa_elsewhere.py"
    chain.write_text(text.replace('"collection": "docs"', '"collection": "elsewhere"'))
    return chain


def outcome(settings, version: int) -> tuple[str, dict[str, str]]:
    tags = MlflowClient().get_model_version("docs-qa", str(version)).tags
    return tags["llmops.gate.status"], tags


def test_first_candidate_passes_on_fixed_thresholds(staged, project: Path) -> None:  # noqa: F811
    data = reference_dataset(project / "answers.jsonl")
    result = run_gate("docs-qa", staged, gate_config(data))
    assert result.passed and result.baseline is None, result.reasons
    assert result.candidate_report.metrics["answers"]["source_hit"] == 1.0
    assert str(model_version("docs-qa@production", staged).version) == "1"
    assert outcome(staged, 1)[0] == "passed"
    gate_rows = read_table(staged.lakehouse, "eval_results")
    passed = gate_rows[gate_rows["metric"] == "gate_passed"]
    assert list(passed["value"]) == [1.0] and list(passed["model_uri"]) == ["models:/docs-qa/1"]


def test_worse_candidate_is_rejected_and_an_equal_one_promoted(staged, project: Path) -> None:  # noqa: F811
    promote("docs-qa", "production", 1, settings=staged)
    data = reference_dataset(project / "answers.jsonl")
    # a candidate that retrieves the wrong page for every question
    log_chain(off_topic_chain(staged, project), name="docs-qa", alias="staging", settings=staged)
    rejected = run_gate("docs-qa", staged, gate_config(data))
    assert not rejected.passed
    assert rejected.candidate_report.metrics["answers"]["source_hit"] == 0.0
    assert rejected.baseline_report.metrics["answers"]["source_hit"] == 1.0
    assert "answers: source_hit 0.000 vs production 1.000 (beyond tolerance 0.0)" in rejected.reasons
    assert str(model_version("docs-qa@production", staged).version) == "1"
    status, tags = outcome(staged, 2)
    assert status == "rejected" and "source_hit" in tags["llmops.rejected"]
    # the same chain as production again: the same answers, so the gate passes
    log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=staged)
    result = run_gate("docs-qa", staged, gate_config(data))
    assert result.passed, result.reasons
    # production on unchanged data was evaluated once in this process, then reused
    assert result.baseline_report.run_id == rejected.baseline_report.run_id
    assert result.candidate_report.run_id not in (rejected.candidate_report.run_id,
                                                  rejected.baseline_report.run_id)
    assert result.candidate_report.metrics["answers"]["token_f1"] == pytest.approx(
        result.baseline_report.metrics["answers"]["token_f1"])
    assert str(model_version("docs-qa@production", staged).version) == "3"
    table = read_table(staged.lakehouse, "eval_results")
    gates = table[table["metric"] == "gate_passed"].sort_values("ts")
    assert list(gates["value"]) == [0.0, 1.0]


def test_non_compliant_candidate_is_rejected_before_evaluation(staged, project: Path) -> None:  # noqa: F811
    chain = project / "chains" / "nodesc.py"
    text = (project / "chains" / "docs_qa.py").read_text()
    line = next(li for li in text.splitlines(keepends=True) if '"description":' in li)
    chain.write_text(text.replace(line, ""))
    log_chain(chain, name="docs-qa", alias="staging", settings=staged)
    result = run_gate("docs-qa", staged, gate_config(project / "unused.jsonl"))
    assert not result.passed and result.candidate_report is None
    assert any("no description" in r for r in result.reasons)
    assert outcome(staged, 2)[0] == "rejected"


def test_gate_cli_exit_status(staged, project: Path) -> None:  # noqa: F811
    data = reference_dataset(project / "answers.jsonl")
    (project / "evals").mkdir(exist_ok=True)
    (project / "evals" / "gate.yaml").write_text(
        f"datasets: [{data}]\nconcurrency: 2\nmetrics:\n  source_hit: {{threshold: 1.01}}\n")
    failed = run_cli("eval", "gate", "docs-qa", cwd=project)
    assert failed.returncode == 1
    assert "rejected" in failed.stderr and "below the threshold 1.010" in failed.stderr
    (project / "evals" / "gate.yaml").write_text(
        f"datasets: [{data}]\nconcurrency: 2\nmetrics:\n  source_hit: {{threshold: 0.75}}\n")
    passed = run_cli("eval", "gate", "docs-qa", cwd=project)
    assert passed.returncode == 0, passed.stderr
    assert "passed: docs-qa/1 is now @production" in passed.stdout
    bad = run_cli("eval", "run", "--model", "docs-qa@staging", "--dataset", "nope.jsonl",
                  cwd=project)
    assert bad.returncode == 1 and bad.stderr.startswith("error: evaluation dataset 'nope.jsonl'")
