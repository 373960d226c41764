"""POST /v1/chains/{name}/invoke: a registered RAG chain, its chat model pointed at vLLM."""

from __future__ import annotations

from pathlib import Path

import httpx

from llmops.chains import log_chain, promote
from llmops.indexing import update_index
from llmops.prompts import set_alias, sync_prompts
from tests.serving.conftest import wait_rows


def test_chain_invoke_through_the_gateway(project: Path, settings, start_gateway) -> None:
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    index = update_index(settings, progress=False, record=False)
    logged = log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=settings)
    promote("docs-qa", "production", logged.version, settings=settings)
    gw = start_gateway()
    h = httpx.Client(base_url=gw.url, timeout=120)
    resp = h.post("/v1/chains/docs-qa/invoke",
                  json={"question": "How do I promote a chain to production?"},
                  headers={"X-Request-Id": "chain-1"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["request_id"] == "chain-1" == resp.headers["x-request-id"]
    assert isinstance(body["answer"], str)
    docs = {p.name for p in (project / "docs").glob("*.md")}
    assert body["sources"] and set(body["sources"]) <= docs
    assert body["versions"] == {"chain": f"docs-qa/{logged.version}", "prompt": "qa/1",
                                "index": index.index_version, "model": "base", "adapter": None}
    staging = h.post("/v1/chains/docs-qa/invoke", json={"question": "Hi", "alias": "staging"})
    assert staging.status_code == 200
    assert h.post("/v1/chains/docs-qa/invoke",
                  json={"question": "Hi", "alias": "nowhere"}).status_code == 404
    fb = h.post("/v1/feedback", json={"request_id": "chain-1", "score": 5})
    assert fb.status_code == 200
    rows = wait_rows(project, "inference_log", 3)
    row = rows[rows["request_id"] == "chain-1"].iloc[0]
    assert (row["chain"], row["chain_version"], row["prompt"], row["prompt_version"]) == (
        "docs-qa", str(logged.version), "qa", "1")
    assert row["model"] == "base" and row["status"] == 200
    assert row["response"] == body["answer"]
    assert len(wait_rows(project, "feedback", 1)) == 1
