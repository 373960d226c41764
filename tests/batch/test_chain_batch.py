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
    assert "rows/s, 0 actors on" in again.stdout  # nothing left to answer: no chain loaded for nothing
    assert len(read_table(settings.lakehouse, "inference_log")) == len(log)


def test_batch_run_refuses_an_unknown_chain_and_writes_nothing(production_chain, project) -> None:
    _questions(project / "questions.jsonl")
    ran = run_cli("batch", "run", "docs-qa@nowhere", "--input", "questions.jsonl",
                  "--output", "answers", cwd=project)
    assert ran.returncode == 1
    last = ran.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "docs-qa@nowhere' does not exist" in last
    assert not (project / "answers").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_a_redacting_environment_logs_batch_rows_redacted_and_dev_as_sent(production_chain,
                                                                         settings,
                                                                         project) -> None:
    """Questions and answers go to ``inference_log`` redacted where the environment redacts
    (Presidio, on the driver) and as sent in dev; the output table holds them as answered.
    The chain echoes its question into its answer, so that the answer carries the canaries."""
    import pandas as pd

    from llmops.chains import log_chain
    from llmops.chains.batch import batch_run
    from llmops.lakehouse import read_table
    from llmops.privacy import RedactionSettings

    source = (project / "chains" / "docs_qa.py").read_text()
    echo = source.replace(
        "mlflow.models.set_model(ChainModel(chain))",
        "from langchain_core.runnables import RunnableLambda\n"
        "chain = chain | RunnableLambda(lambda a: {**a, 'answer': a['messages'][-1]['content']})\n"
        "mlflow.models.set_model(ChainModel(chain))")
    assert echo != source
    (project / "chains" / "echo.py").write_text(echo)
    logged = log_chain(project / "chains" / "echo.py", name="echo", settings=settings)
    question = "I am ada@example.com, card 4111 1111 1111 1111: how do I promote a chain?"
    canaries = ("ada@example.com", "4111 1111 1111 1111")
    redacting = settings.model_copy(update={"redaction": RedactionSettings(enabled=True)})
    assert settings.redaction.enabled is False

    for env_settings, prefix in ((redacting, "r"), (settings, "d")):
        frame = pd.DataFrame({"id": [f"{prefix}1"], "question": [question]})
        result = batch_run(f"echo/{logged.version}", frame, env_settings, actors=1,
                           batch_size=1, progress=False)
        assert result.errors == 0
        [answer] = result.frame["answer"]
        assert all(c in answer for c in canaries)  # the output: as answered

    log = read_table(settings.lakehouse, "inference_log")
    log = log[log["endpoint"] == "batch"].set_index(log["request_id"].str.rsplit("-", n=1).str[-1])
    assert sorted(log.index) == ["d1", "r1"]
    redacted = log.loc["r1"]
    assert json.loads(redacted["request"]) == {
        "question": "I am <EMAIL_ADDRESS>, card <CREDIT_CARD>: how do I promote a chain?"}
    assert "<EMAIL_ADDRESS>" in redacted["response"] and "<CREDIT_CARD>" in redacted["response"]
    assert not any(c in redacted["request"] + redacted["response"] for c in canaries)
    as_sent = log.loc["d1"]
    assert json.loads(as_sent["request"]) == {"question": question}
    assert all(c in as_sent["response"] for c in canaries)
