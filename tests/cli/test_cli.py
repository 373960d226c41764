"""The real ``llmops`` console script, in fresh processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli


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


def test_the_production_deployment(project: Path, mlflow_server: str, postgres: str,
                                   artifacts_s3, s3_env: str, chroma_server,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard production deployment, every server real and started by the tests: MLflow
    on PostgreSQL with its artifacts on S3, the lakehouse on S3, Chroma as a server. Prompts,
    the index, chains, an evaluation and a fine-tuned adapter all go there, none to disk."""
    import boto3
    import psycopg2

    from llmops.config import load_settings
    from llmops.finetune import finetune
    from llmops.lakehouse import read_table
    from tests.finetune.conftest import fast_config

    host, port = chroma_server
    text = (project / "llmops.yaml").read_text().replace("  prod:\n", (
        f"  prod:\n    lakehouse: {s3_env}\n    chroma: {{host: {host}, port: {port}}}\n"))
    (project / "llmops.yaml").write_text(text + "index:\n  source: kb\n")
    (project / "kb").mkdir()
    (project / "kb" / "rollouts.md").write_text(
        "# Rollouts\n\nA rollout sends a share of live traffic to a candidate chain and "
        "judges it on user feedback before it is promoted.\n")
    (project / "kb" / "gates.md").write_text(
        "# Gates\n\nThe promotion gate compares a candidate with production on the golden "
        "set and promotes it when no metric falls.\n")
    (project / "eval.jsonl").write_text(
        '{"question": "What is a rollout?", "expected": "A share of live traffic.", '
        '"fact": "traffic"}\n')
    env = {"LLMOPS_PROD_TRACKING_URI": mlflow_server}
    assert "registered qa/1" in ok("--env", "prod", "prompts", "sync", env=env, cwd=project)
    ok("prompts", "alias", "qa", "production", "1", "--env", "prod", env=env, cwd=project)
    assert "added 2" in ok("index", "update", "--env", "prod", env=env, cwd=project)
    logged = ok("chains", "log", "chains/docs_qa.py", "--alias", "staging", "--env", "prod",
                env=env, cwd=project)
    assert "registered docs-qa/" in logged
    answer = ok("chains", "invoke", "docs-qa@staging", "What is a rollout?", "--json",
                "--env", "prod", env=env, cwd=project)
    assert '"prompt": "qa/1"' in answer and "rollouts.md" in answer
    ok("eval", "run", "--model", "docs-qa@staging", "--dataset", "eval.jsonl", "--env", "prod",
       env=env, cwd=project)
    rows = [{"prompt": "What is a rollout?", "completion": "A share of live traffic."}] * 8
    (project / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("LLMOPS_PROD_TRACKING_URI", mlflow_server)
    tuned = finetune(load_settings("prod", project), base="tiny", data=project / "sft.jsonl",
                     progress=False, config=fast_config(epochs=1, eval_fraction=0.0))

    # the lakehouse on S3 holds the evaluation's rows
    results = read_table(s3_env, "eval_results")
    assert len(results) and results["model_uri"].str.startswith("models:/docs-qa").all()
    assert "token_f1" in set(results["metric"])
    # the tracking server's store is PostgreSQL: what was registered is in its tables
    with psycopg2.connect(postgres) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM registered_models")
        names = {r[0] for r in cur.fetchall()}
    assert {"docs-qa", tuned.model_name} <= names
    # ... and its artifacts are on S3 (the chain's model, the adapter's weights)
    s3 = boto3.client("s3", endpoint_url=artifacts_s3.url, region_name="us-east-1",
                      aws_access_key_id=artifacts_s3.env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=artifacts_s3.env["AWS_SECRET_ACCESS_KEY"])
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="mlflow-artifacts") for o in page.get("Contents", [])]
    assert any(k.endswith("MLmodel") for k in keys)
    assert any("adapter_model.safetensors" in k for k in keys)
    # nothing went to the embedded stores of that environment
    prod = project / ".llmops" / "prod"
    for embedded in ("mlflow.db", "lakehouse", "chroma"):
        assert not (prod / embedded).exists(), embedded
    # the gateway's spans go to the tracking server's OTLP endpoint (MLflow's /v1/traces, on
    # PostgreSQL) when no OTEL_EXPORTER_OTLP_* endpoint is set: sent and read back
    _spans_reach_the_tracking_server(load_settings("prod", project), monkeypatch)


def _spans_reach_the_tracking_server(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from llmops.serving.tracing import finish_span, start_span
    from llmops.stores import connect
    from llmops.telemetry import configure_tracing, shutdown_tracing

    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    experiment = connect(settings)
    setup = configure_tracing("llmops-gateway", settings.tracking_uri, experiment)
    assert setup is not None and setup.sink == "mlflow"
    try:
        span = start_span("/v1/chat/completions", "req-to-mlflow", "base")
        finish_span(span, {"request_id": "req-to-mlflow", "status": 200, "model": "base",
                           "prompt_tokens": 11, "completion_tokens": 4, "client": "gateway-key"})
        assert setup.flush()
    finally:
        shutdown_tracing()
    traces = MlflowClient().search_traces(locations=[experiment])
    spans = [s for t in traces for s in t.data.spans
             if s.attributes.get("llmops.request_id") == "req-to-mlflow"]
    assert len(spans) == 1
    # MLflow reads the GenAI conventions: a chat model span with its token usage
    assert spans[0].span_type == "CHAT_MODEL"
    assert spans[0].attributes["mlflow.chat.tokenUsage"]["output_tokens"] == 4
