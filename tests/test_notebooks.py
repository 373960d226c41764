"""The notebooks a data scientist starts from run top to bottom in a real kernel."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import mlflow
import nbformat
from nbclient import NotebookClient

from llmops.lakehouse import read_table

REPO = Path(__file__).resolve().parents[1]


def execute(name: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def last_result(nb: nbformat.NotebookNode) -> str:
    outputs = [o for o in nb.cells[-1].outputs if o.output_type == "execute_result"]
    return outputs[-1]["data"]["text/plain"]


def test_prompt_tracking_notebook(project: Path, settings) -> None:
    shutil.copytree(REPO / "notebooks", project / "notebooks")
    nb = execute("prompt_tracking.ipynb", project / "notebooks")
    summary = ast.literal_eval(last_result(nb))
    assert summary["prompt"] == "qa/1"
    assert summary["latency_ms_p50"] > 0
    mlflow.set_tracking_uri(settings.tracking_uri)
    registered, drafted, comparison = (mlflow.get_run(r) for r in summary["runs"])
    assert registered.data.params["prompt_version"] == "1"
    assert drafted.data.params["prompt_name"] == "qa-draft"
    assert drafted.data.params["prompt_version"] == "draft"
    assert comparison.data.params["prompts"] == "qa/1, qa-draft/draft"
    html = [o for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any("latency_ms" in o["data"]["text/html"] for o in html)


def test_feedback_notebook(project: Path, settings) -> None:
    shutil.copytree(REPO / "notebooks", project / "notebooks")
    nb = execute("feedback.ipynb", project / "notebooks")
    summary = ast.literal_eval(last_result(nb))
    assert summary["state"] == "recorded"
    assert (summary["source"], summary["rating"], summary["score"]) == ("notebook", -1, 2)
    assert summary["correction"].startswith("Run llmops chains promote")
    assert summary["prompt"] == "qa/1"
    assert summary["sft_rows"] == 1
    mlflow.set_tracking_uri(settings.tracking_uri)
    run = mlflow.get_run(summary["run"])
    assert run.data.params["prompt_version"] == "1"
    assert run.data.metrics["feedback_rating"] == -1
    feedback = read_table(settings.lakehouse, "feedback")  # the project's own lakehouse
    assert list(feedback["source"]) == ["notebook"]
    shown = [o for c in nb.cells for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert shown, "the widget is displayed under the answer"
