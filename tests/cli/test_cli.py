"""The real ``llmops`` console script, in fresh processes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import copy_docs_index, free_port, run_cli


def ok(*args: str, **kw) -> str:
    out = run_cli(*args, **kw)
    assert out.returncode == 0, f"{args}: {out.stderr[-2000:]}"
    return out.stdout


def test_prompt_and_chain_workflow(project: Path, docs_indexed) -> None:
    assert "3 registered, 0 unchanged" in ok("prompts", "sync", cwd=project)
    assert "0 registered, 3 unchanged" in ok("prompts", "sync", cwd=project)
    qa = project / "prompts" / "qa.yaml"
    qa.write_text(qa.read_text().replace("Question:", "Q:"))
    assert "registered qa/2" in ok("prompts", "sync", cwd=project)
    assert "qa@production -> qa/2" in ok("prompts", "alias", "qa", "production", "2", cwd=project)
    listing = ok("prompts", "list", cwd=project)
    assert any(line.split()[:2] == ["qa", "2"] and "production=2" in line
               for line in listing.splitlines())
    shown = ok("prompts", "show", "qa@production", cwd=project)
    assert shown.startswith("qa/2  (production)")
    assert "Q: {{question}}" in shown and "llmops.content_hash" in shown
    assert "Question: {{question}}" in ok("prompts", "show", "qa/1", cwd=project)
    diff = ok("prompts", "diff", "qa", "1", "2", cwd=project)
    assert "-Question: {{question}}" in diff and "+Q: {{question}}" in diff

    # the docs are embedded already (a first build is tested in tests/indexing)
    indexed = ok("index", "update", cwd=project)
    assert re.search(r"added 0, updated 0, deleted 0, unchanged [1-9]\d* chunks", indexed)
    assert "index version" in indexed
    logged = ok("chains", "log", "chains/docs_qa.py", "--alias", "staging", cwd=project)
    assert "registered docs-qa/1 (prompt prompts:/qa/2, alias staging)" in logged
    answer = ok("chains", "invoke", "docs-qa@staging", "How do I promote a chain?", cwd=project)
    assert answer.strip()
    promoted = ok("chains", "promote", "docs-qa", "--alias", "production", "--version", "1",
                  cwd=project)
    assert "docs-qa@production -> docs-qa/1" in promoted
    as_json = ok("chains", "invoke", "docs-qa@production", "hi", "--json", cwd=project)
    assert '"prompt": "qa/2"' in as_json


def test_environments_have_separate_stores(project: Path) -> None:
    ok("--env", "staging", "prompts", "sync", cwd=project)
    assert "no prompts registered" in ok("prompts", "list", cwd=project)
    assert "qa" in ok("prompts", "list", env={"LLMOPS_ENV": "staging"}, cwd=project)
    assert "qa" in ok("prompts", "list", "--env", "staging", cwd=project)
    assert (project / ".llmops" / "staging" / "mlflow.db").is_file()


@pytest.mark.parametrize(
    ("args", "setup", "pattern"),
    [
        (("prompts", "show", "nope@production"), None, "prompt 'nope@production' does not exist"),
        (("prompts", "show", "qa@@x"), None, "is not a valid reference"),
        (("chains", "invoke", "docs-qa@staging", "hi"), None, "model 'docs-qa@staging' does not exist"),
        (("prompts", "sync"), ("prompts/bad.yaml", "variables: []\ntemplate: 'Hi {{who}}'\n"),
         r"bad.yaml: the template uses \{\{who\}\}"),
        (("prompts", "sync"), ("prompts/bad.yaml", "template: [oops\n"), "is not valid YAML"),
        (("prompts", "list"), ("llmops.yaml", "envs: {dev: {tracking_uri: 5}}\n"),
         "field 'envs.dev.tracking_uri'"),
        (("prompts", "list", "--env", "qa"), None, "unknown environment 'qa'"),
        (("index", "update", "--source", "nowhere"), None, "source .*nowhere does not exist"),
        (("chains", "log", "chains/docs_qa.py", "--alias", "latest"), None,
         "'latest' cannot be an alias"),
        (("prompts", "alias", "qa", "v2", "1"), None, "'v2' cannot be an alias"),
    ],
)
def test_errors_are_one_line_and_exit_1(project: Path, args, setup, pattern: str) -> None:
    import re

    if setup:
        (project / setup[0]).write_text(setup[1])
    out = run_cli(*args, cwd=project)
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and re.search(pattern, lines[0]), out.stderr[-1500:]
    assert "Traceback" not in out.stderr


def test_bad_usage_exits_2(project: Path) -> None:
    assert run_cli("prompts", "diff", "qa", "one", "2", cwd=project).returncode == 2
    assert run_cli("chains", "promote", "docs-qa", cwd=project).returncode == 2


def test_unreachable_tracking_server(project: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli("prompts", "sync", env={"LLMOPS_TRACKING_URI": url}, cwd=project, timeout=60)
    assert out.returncode == 1
    assert f"error: cannot reach the MLflow tracking server {url}" in out.stderr
    assert "Traceback" not in out.stderr


def test_against_a_real_mlflow_server(project: Path, mlflow_server: str, docs_index: Path) -> None:
    env = {"LLMOPS_PROD_TRACKING_URI": mlflow_server}
    copy_docs_index(docs_index, project, "prod")
    assert "registered qa/1" in ok("--env", "prod", "prompts", "sync", env=env, cwd=project)
    ok("prompts", "alias", "qa", "production", "1", "--env", "prod", env=env, cwd=project)
    ok("index", "update", "--env", "prod", env=env, cwd=project)
    logged = ok("chains", "log", "chains/docs_qa.py", "--alias", "staging", "--env", "prod",
                env=env, cwd=project)
    assert "registered docs-qa/" in logged
    answer = ok("chains", "invoke", "docs-qa@staging", "What is llmops?", "--json",
                "--env", "prod", env=env, cwd=project)
    assert '"prompt": "qa/1"' in answer
    # nothing went to the embedded store of that environment
    assert not (project / ".llmops" / "prod" / "mlflow.db").exists()
