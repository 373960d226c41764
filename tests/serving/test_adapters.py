"""Registered LoRA adapters served by vLLM: loaded at start-up, hot-loaded through the
admin endpoint (registry only, no paths), picked with ``model``, used by a chain."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import openai
import pytest

from llmops.chains import log_chain, model_version, promote
from llmops.finetune import finetune, promote_adapter
from llmops.indexing import update_index
from llmops.prompts import set_alias, sync_prompts
from tests.conftest import free_port
from tests.finetune.conftest import CORRECTIONS, fast_config, write_jsonl
from tests.serving.conftest import GatewayProcess, wait_rows, write_endpoint

KEYS = "usr-key-1=invoke,feedback;adm-key-2=admin"
ADMIN = {"Authorization": "Bearer adm-key-2"}
USER = {"Authorization": "Bearer usr-key-1"}


@pytest.fixture
def adapter(settings, tmp_path: Path):
    data = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": q, "completion": a}
                                                for q, a in CORRECTIONS])
    tuned = finetune(settings, data=data, config=fast_config(epochs=1), progress=False)
    promote_adapter(tuned.model_name, "production", tuned.version, settings)
    return tuned


def test_hot_load_from_the_registry_only(project: Path, settings, adapter, start_gateway) -> None:
    gw = start_gateway(env={"LLMOPS_API_KEYS": KEYS})
    h = httpx.Client(base_url=gw.url, timeout=120)
    load = {"name": "docs-qa-lora"}
    assert h.post("/admin/adapters/load", json=load, headers=USER).status_code == 403
    assert h.post("/admin/adapters/load", json=load).status_code == 401
    # no client-supplied paths, and names are registry references only
    for bad in ({"name": "../../etc/passwd"}, {"name": "docs-qa-lora", "lora_path": "/tmp"},
                {"name": "/tmp/adapter"}, {"name": "docs-qa-lora/../../x"},
                {"name": "docs-qa-lora", "version": "1; rm"}):
        resp = h.post("/admin/adapters/load", json=bad, headers=ADMIN)
        assert resp.status_code == 400, (bad, resp.text)
    missing = h.post("/admin/adapters/load", json={"name": "docs-qa-lora", "version": 99},
                     headers=ADMIN)
    assert missing.status_code == 404
    not_adapter = h.post("/admin/adapters/load", json={"name": "base"}, headers=ADMIN)
    assert not_adapter.status_code == 404

    ok = h.post("/admin/adapters/load", json=load, headers=ADMIN)
    assert ok.status_code == 200, ok.text
    served = ok.json()["loaded"]["model"]
    assert served == f"docs-qa-lora-v{adapter.version}" == adapter.served_name
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="usr-key-1", max_retries=0)
    models = client.models.list().data
    assert served in {m.id for m in models}
    # where the adapter and the base model lie on disk is not the callers' business
    roots = {m.id: getattr(m, "root", None) for m in models}
    assert roots[served] == "base" and not any(str(r).startswith("/") for r in roots.values())
    reply = client.chat.completions.with_raw_response.create(
        model=served, max_tokens=8, messages=[{"role": "user", "content": CORRECTIONS[0][0]}])
    rid = reply.headers["x-request-id"]
    answer = reply.parse().choices[0].message.content
    rows = wait_rows(project, "inference_log", 1)
    row = rows[rows["request_id"] == rid].iloc[0]
    assert (row["model"], row["adapter"], row["status"]) == (served, served, 200)
    assert isinstance(answer, str) and row["response"] == answer

    # the engine really applies the hot-loaded adapter: with greedy decoding, the same prompt
    # gets another answer from NAME-vN than from the base model, and the same one every time
    def greedy(model: str) -> str:
        out = client.chat.completions.create(
            model=model, max_tokens=16, temperature=0,
            messages=[{"role": "user", "content": CORRECTIONS[0][0]}])
        return out.choices[0].message.content or ""

    base_answer, tuned_answer = greedy("base"), greedy(served)
    assert (greedy("base"), greedy(served)) == (base_answer, tuned_answer)
    assert tuned_answer != base_answer, tuned_answer
    # loading again is a no-op; unloading takes only a served name
    assert h.post("/admin/adapters/load", json=load, headers=ADMIN).status_code == 200
    assert h.post("/admin/adapters/unload", json={"model": "/etc/x"},
                  headers=ADMIN).status_code == 400
    assert h.post("/admin/adapters/unload", json={"model": served},
                  headers=ADMIN).status_code == 200
    assert served not in {m.id for m in client.models.list()}


def test_startup_load_and_a_chain_that_names_the_adapter(project: Path, settings, adapter,
                                                         engine_url: str, docs_indexed) -> None:
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    source = (project / "chains" / "docs_qa.py").read_text()
    (project / "chains" / "tuned.py").write_text(source.replace(
        '"retriever": {"collection": "docs", "k": 2},',
        '"retriever": {"collection": "docs", "k": 2},\n    "chat_model": {"kind": "local", '
        '"model": "tiny", "max_tokens": 8, "adapter": "docs-qa-lora@production"},'))
    assert "docs-qa-lora@production" in (project / "chains" / "tuned.py").read_text()
    logged = log_chain(project / "chains" / "tuned.py", name="docs-qa", settings=settings)
    version = model_version(f"docs-qa/{logged.version}", settings)
    assert version.tags["llmops.adapter"] == f"docs-qa-lora/{adapter.version}"
    promote("docs-qa", "production", logged.version, settings=settings)

    port = free_port()
    write_endpoint(project, engine_url, port)
    endpoint = project / "serving" / "endpoint.yaml"
    endpoint.write_text(endpoint.read_text().replace(
        "  served_model_name: base\n", "  served_model_name: base\n  adapters: [docs-qa-lora]\n"))
    # the engine runs elsewhere: start-up loads the production adapter at runtime
    engine_key = {"Authorization": f"Bearer {os.environ['LLMOPS_ENGINE_API_KEY']}"}

    def engine_models() -> set[str]:
        listed = httpx.get(f"{engine_url}/v1/models", headers=engine_key)
        assert listed.status_code == 200
        return {m["id"] for m in listed.json()["data"]}

    if adapter.served_name in engine_models():  # loaded by an earlier test in this session
        unload = httpx.post(f"{engine_url}/v1/unload_lora_adapter", headers=engine_key,
                            json={"lora_name": adapter.served_name})
        assert unload.status_code == 200, unload.text
    assert adapter.served_name not in engine_models()
    gw = GatewayProcess(project, port).wait_ready()
    try:
        assert f"loaded adapter {adapter.served_name}" in gw.output()
        models = httpx.get(f"{gw.url}/v1/models").json()
        assert adapter.served_name in {m["id"] for m in models["data"]}
        unload = httpx.post(f"{engine_url}/v1/unload_lora_adapter", headers=engine_key,
                            json={"lora_name": adapter.served_name})
        assert unload.status_code == 200 and adapter.served_name not in engine_models()
        # the chain call loads the adapter version the chain was logged with, then uses it
        resp = httpx.post(f"{gw.url}/v1/chains/docs-qa/invoke", timeout=120,
                          json={"question": CORRECTIONS[0][0]})
        assert resp.status_code == 200, resp.text
        assert resp.json()["versions"]["adapter"] == adapter.served_name
        rows = wait_rows(project, "inference_log", 1)
        row = rows[rows["request_id"] == resp.json()["request_id"]].iloc[0]
        assert (row["adapter"], row["chain_version"]) == (adapter.served_name, str(logged.version))
    finally:
        gw.stop()
