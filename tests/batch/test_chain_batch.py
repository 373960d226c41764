"""``llmops batch run``: a registered chain over a table, on a real local Ray, in a fresh process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


def _questions(path: Path) -> list[dict]:
    golden = [json.loads(x) for x in (Path(__file__).parents[2] / "evals" / "golden.jsonl")
              .read_text().splitlines() if x]
    rows = [{"id": f"q{i:02d}", "question": g["question"]} for i, g in enumerate(golden[:19])]
    rows.append({"id": "q-empty", "question": ""})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.mark.slow
def test_batch_run_answers_a_table_logs_each_row_and_resumes(production_chain,
                                                             settings, project) -> None:
    from deltalake import DeltaTable

    from llmops.chains import invoke
    from llmops.lakehouse import read_table

    rows = _questions(project / "questions.jsonl")
    out = project / "answers"
    ran = run_cli("batch", "run", "docs-qa@production", "--input", "questions.jsonl",
                  "--output", "answers", "--batch-size", "4", "--max-error-share", "0.1",
                  cwd=project, timeout=600)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert "batch docs-qa/1: 20 rows into " in ran.stdout and "1 errors" in ran.stdout
    table = DeltaTable(str(out)).to_pyarrow_dataset().to_table().to_pandas().set_index("id")
    assert sorted(table.index) == sorted(r["id"] for r in rows)
    assert table.loc["q-empty", "error"] == "ValueError: the question is empty"
    good = table.drop(index="q-empty")
    assert good["error"].isna().all() and (good["answer"].str.len() > 0).all()
    assert set(good["chain_version"]) == {"1"} and set(good["prompt_version"]) == {"qa/1"}
    assert all(json.loads(s) for s in good["sources"])
    # the same answer the chain gives when asked directly (greedy, same version)
    question = good.loc["q03", "question"]
    assert good.loc["q03", "answer"] == invoke("docs-qa@production", question, settings)["answer"]

    log = read_table(settings.lakehouse, "inference_log")
    batch = log[log["endpoint"] == "batch"]
    assert len(batch) == 20 and int((batch["status"] == 500).sum()) == 1
    assert set(batch["chain_version"]) == {"1"}
    assert set(batch[batch["status"] == 200]["prompt_version"]) == {"1"}

    again = run_cli("batch", "run", "docs-qa@production", "--input", "questions.jsonl",
                    "--output", "answers", cwd=project, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 rows into" in again.stdout and "20 already done" in again.stdout
    assert len(read_table(settings.lakehouse, "inference_log")) == len(log)


def test_batch_run_refuses_an_unknown_chain_and_writes_nothing(production_chain, project) -> None:
    _questions(project / "questions.jsonl")
    ran = run_cli("batch", "run", "docs-qa@nowhere", "--input", "questions.jsonl",
                  "--output", "answers", cwd=project)
    assert ran.returncode == 1
    last = ran.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "docs-qa@nowhere' does not exist" in last
    assert not (project / "answers").exists()
