"""An answer reports the index version its retriever read, not the one its chain was logged with.

The update runs as ``llmops index update`` in another process, as it does next to a
serving gateway, while this process holds the chain (and embedded Chroma) open.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from llmops.chains import load, log_chain
from llmops.feedback import NotebookAnswer, record_feedback
from llmops.indexing import current_index_version, update_index
from llmops.lakehouse import read_table
from llmops.prompts import set_alias, sync_prompts
from tests.conftest import run_cli

CANARY = "The lineage canary of llmops is a purple giraffe named Ottoline."
QUESTION = "What is the lineage canary of llmops?"


@pytest.fixture
def logged(settings, project: Path, docs_indexed):
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=settings)
    return settings


def update_docs_in_another_process(project: Path) -> None:
    doc = sorted((project / "docs").glob("*.md"))[0]
    doc.write_text(doc.read_text() + f"\n\n## Canary\n\n{CANARY}\n")
    out = run_cli("index", "update", cwd=project)
    assert out.returncode == 0, out.stderr[-3000:]


def test_an_open_chain_reports_and_reads_the_updated_index(logged, project: Path) -> None:
    before, _ = current_index_version(logged, "docs")
    model = load("docs-qa@staging", logged)  # held open, as the gateway holds it
    first = model.predict([{"question": QUESTION}])[0]
    assert first["index_version"] == before
    assert "purple giraffe" not in first["messages"][0]["content"]

    update_docs_in_another_process(project)
    after, _ = current_index_version(logged, "docs")
    assert after != before
    answer = model.predict([{"question": QUESTION}])[0]
    assert answer["index_version"] == after
    # the version is the one it read: the new chunk is in the context the model was sent
    assert "purple giraffe" in answer["messages"][0]["content"]
    # what is pinned at log time stays as logged
    tags = MlflowClient().get_model_version("docs-qa", "1").tags
    assert tags["llmops.index_version"] == before
    assert answer["prompt"] == "qa/1"


def test_the_notebook_path_logs_the_version_and_the_served_messages(logged, project: Path) -> None:
    update_docs_in_another_process(project)
    after, _ = current_index_version(logged, "docs")
    answer = load("docs-qa@staging", logged).predict([{"question": QUESTION}])[0]
    assert answer["index_version"] == after
    noted = NotebookAnswer.from_result(answer, question=QUESTION, chain="docs-qa@staging",
                                       settings=logged)
    record_feedback(noted, rating=1, settings=logged)
    row = read_table(logged.lakehouse, "inference_log").set_index("request_id").loc[
        noted.request_id]
    assert row["index_version"] == after
    assert json.loads(row["request"]) == {"question": QUESTION, "messages": answer["messages"]}
    assert [m["role"] for m in answer["messages"]] == ["system", "user"]
    assert answer["messages"][1]["content"] == f"Question: {QUESTION}"
