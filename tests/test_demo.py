"""`llmops demo`: the main job, end to end, in a fresh process (vLLM included)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli


@pytest.mark.slow
def test_demo_runs_the_whole_loop(project: Path) -> None:
    shutil.copytree(REPO / "serving", project / "serving")
    out = run_cli("demo", cwd=project, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    text = out.stdout
    for step in range(1, 8):
        assert f"[{step}/7]" in text
    assert "sources:" in text and "chain Q:" in text and "openai client:" in text
    assert "engine and gateway stopped" in text and text.rstrip().endswith("demo finished")
    from llmops.lakehouse import read_table

    lake = project / ".llmops" / "dev" / "lakehouse"
    log = read_table(lake, "inference_log")
    assert sorted(log["endpoint"]) == ["/v1/chains/docs-qa/invoke"] * 2 + ["/v1/chat/completions"]
    feedback = read_table(lake, "feedback")
    assert len(feedback) == 2 and set(feedback["request_id"]) <= set(log["request_id"])
    assert len(read_table(lake, "index_runs")) == 1
