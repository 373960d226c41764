"""`llmops demo`: the main job, end to end, in a fresh process (vLLM included)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli


@pytest.mark.slow
def test_demo_runs_the_whole_loop(project: Path) -> None:
    for folder in ("serving", "evals", "finetune"):
        shutil.copytree(REPO / folder, project / folder)
    out = run_cli("demo", cwd=project, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    text = out.stdout
    for step in range(1, 10):
        assert f"[{step}/9]" in text
    assert "sources:" in text and "chain Q:" in text and "openai client:" in text
    assert "hot-loaded as docs-qa-lora-v1" in text and "monitor:" in text
    assert "engine and gateway stopped" in text and text.rstrip().endswith("demo finished")
    from llmops.lakehouse import read_table

    lake = project / ".llmops" / "dev" / "lakehouse"
    log = read_table(lake, "inference_log")
    assert sorted(log["endpoint"]) == (["/v1/chains/docs-qa/invoke"] * 12
                                       + ["/v1/chat/completions"] * 2)
    assert set(log[log["endpoint"] == "/v1/chat/completions"]["model"]) == {
        "base", "docs-qa-lora-v1"}
    feedback = read_table(lake, "feedback")
    assert len(feedback) == 12 and set(feedback["request_id"]) <= set(log["request_id"])
    assert len(read_table(lake, "index_runs")) == 1
    # the first chain passed the gate on fixed thresholds; the adapter's chain was gated too
    from mlflow import MlflowClient

    # the demo's own store (set explicitly: other tests leave a registry URI behind)
    uri = f"sqlite:///{project / '.llmops' / 'dev' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first, tuned = (client.get_model_version("docs-qa", v) for v in ("1", "2"))
    assert first.tags["llmops.gate.status"] == "passed"
    assert tuned.tags["llmops.adapter"] == "docs-qa-lora/1"
    assert tuned.tags["llmops.gate.status"] in ("passed", "rejected")
    gates = read_table(lake, "eval_results")
    assert sorted(gates[gates["metric"] == "gate_passed"]["model_uri"]) == [
        "models:/docs-qa/1", "models:/docs-qa/2"]
    assert len(read_table(lake, "monitoring")) >= 1
