"""The evaluation's fast path: every row scored into one MLflow table, a sample traced; and
everything it says it recorded is in the store, at high concurrency on the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from llmops.evals import evaluate_chain, run_gate
from llmops.evals.config import GateConfig, MetricRule
from llmops.lakehouse import read_table
from tests.conftest import REPO
from tests.evals.test_runs import staged  # noqa: F401 - a fixture


def _golden(path: Path, n: int) -> Path:
    rows = [json.loads(x) for x in (REPO / "evals" / "golden.jsonl").read_text().splitlines()
            if x][:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _traces(run_id: str) -> list:
    return mlflow.search_traces(run_id=run_id, return_type="list", max_results=1000)


def _nested(parent: str) -> dict[str, str]:
    runs = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                              output_format="list")
    return {r.info.run_name: r.info.run_id for r in runs}


def test_fast_path_keeps_every_row_in_a_table_and_traces_a_sample(staged, project) -> None:  # noqa: F811
    data = _golden(project / "golden.jsonl", 12)
    report = evaluate_chain("docs-qa@staging", [data], staged, concurrency=4, traces=3)
    run_id = _nested(report.run_id)["golden"]
    # the per-example table: one row per example, with the answer and every metric
    table = mlflow.load_table("examples/golden.json", run_ids=[run_id])
    assert len(table) == 12 and table["error"].isna().all()
    assert table["question"].tolist() == [json.loads(x)["question"]
                                          for x in data.read_text().splitlines()]
    for metric in ("token_f1", "fact_hit", "source_hit", "exact_match", "latency_ms"):
        assert report.metrics["golden"][metric] == pytest.approx(table[metric].mean())
    assert report.tables["golden"].endswith("examples/golden.json")
    # a sample of rows is traced, each with its assessments
    traces = _traces(run_id)
    assert len(traces) == 3
    names = {a.name for a in traces[0].info.assessments}
    assert {"token_f1", "fact_hit", "source_hit"} <= names
    # eval_results: the means, and each example's scores
    rows = read_table(staged.lakehouse, "eval_results")
    mine = rows[rows["run_id"] == report.run_id]
    means = mine[mine["example_id"].isna()]
    assert dict(zip(means["metric"], means["value"], strict=True)) == pytest.approx(
        report.metrics["golden"])
    per_example = mine[mine["example_id"].notna() & (mine["metric"] == "token_f1")]
    assert sorted(per_example["example_id"]) == sorted(table["example_id"])
    assert per_example["value"].mean() == pytest.approx(report.metrics["golden"]["token_f1"])


@pytest.mark.slow
def test_every_promised_trace_is_stored_at_high_concurrency(staged, project) -> None:  # noqa: F811
    """Many threads write traces to the embedded SQLite store at once (the benchmark's
    concurrency): none may be lost, and the fast path's scores equal the harness's."""
    data = _golden(project / "golden.jsonl", 30)
    full = evaluate_chain("docs-qa@staging", [data], staged, concurrency=16, traces="all")
    run_id = _nested(full.run_id)["golden"]
    traces = _traces(run_id)
    assert len(traces) == 30
    assert all({"token_f1", "fact_hit"} <= {a.name for a in t.info.assessments} for t in traces)
    fast = evaluate_chain("docs-qa@staging", [data], staged, concurrency=16)
    assert fast.metrics["golden"].keys() == full.metrics["golden"].keys()
    for metric, value in full.metrics["golden"].items():
        if metric != "latency_ms":
            assert fast.metrics["golden"][metric] == pytest.approx(value), metric
    assert len(_traces(_nested(fast.run_id)["golden"])) == 8


def test_the_gate_decides_the_same_on_both_paths(staged, project) -> None:  # noqa: F811
    from llmops.chains import log_chain, promote
    from llmops.prompts import set_alias

    promote("docs-qa", "production", 1, settings=staged)
    set_alias("qa_closed_book", "production", 1, staged)
    log_chain(project / "chains" / "docs_qa_closed_book.py", name="docs-qa", alias="staging",
              settings=staged)
    data = _golden(project / "golden.jsonl", 10)
    config = GateConfig(datasets=[str(data)], primary="token_f1",
                        metrics={"token_f1": MetricRule(threshold=0.0)})
    decisions = {}
    for traces in ("all", 8):
        result = run_gate("docs-qa", staged, config.model_copy(update={"traces": traces}),
                          promote_on_pass=False)
        decisions[traces] = (result.passed, result.reasons,
                             result.candidate_report.metrics, result.baseline_report.metrics)
    assert decisions["all"][:2] == decisions[8][:2]
    for a, b in zip(decisions["all"][2:], decisions[8][2:], strict=True):
        assert {k: v for k, v in a["golden"].items() if k != "latency_ms"} == pytest.approx(
            {k: v for k, v in b["golden"].items() if k != "latency_ms"})


@pytest.mark.slow
def test_predictions_on_ray_score_as_predictions_in_process(staged, project) -> None:  # noqa: F811
    data = _golden(project / "golden.jsonl", 8)
    here = evaluate_chain("docs-qa@staging", [data], staged, concurrency=2, traces=1)
    on_ray = evaluate_chain("docs-qa@staging", [data], staged, concurrency=2, traces=1,
                            engine="ray")
    for metric, value in here.metrics["golden"].items():
        if metric != "latency_ms":
            assert on_ray.metrics["golden"][metric] == pytest.approx(value), metric
    table = mlflow.load_table("examples/golden.json", run_ids=[_nested(on_ray.run_id)["golden"]])
    assert len(table) == 8 and table["error"].isna().all() and (table["answer"] != "").all()
