"""API keys with scopes; staging and prod refuse to start without keys."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import free_port, run_cli
from tests.serving.conftest import write_endpoint

KEYS = ("inv-key-123=invoke;fb-key-456=feedback;adm-key-789=admin;"
        "app-key-000=invoke,feedback")


def test_staging_needs_keys(project: Path, engine_url: str) -> None:
    write_endpoint(project, engine_url, free_port())
    out = run_cli("serve", "--env", "staging", cwd=project, env={"LLMOPS_API_KEYS": ""}, timeout=120)
    assert out.returncode == 1
    assert "requires API keys and none are set" in out.stderr and "Traceback" not in out.stderr


def test_the_shipped_endpoint_file_cannot_switch_keys_off(project: Path) -> None:
    """serving/endpoint.yaml says auth.required: false; staging and prod require keys anyway,
    and dev without keys listens on loopback only. Both refuse before any engine starts."""
    from tests.conftest import REPO

    (project / "serving").mkdir(exist_ok=True)
    shipped = (REPO / "serving" / "endpoint.yaml").read_text()
    assert "required: false" in shipped
    (project / "serving" / "endpoint.yaml").write_text(shipped)
    for env in ("staging", "prod"):
        out = run_cli("--env", env, "serve", cwd=project, env={"LLMOPS_API_KEYS": ""},
                      timeout=120)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "requires API keys and none are set" in out.stderr
        assert "Traceback" not in out.stderr and "starting the engine" not in out.stdout
    exposed = run_cli("serve", "--host", "0.0.0.0", cwd=project, env={"LLMOPS_API_KEYS": ""},
                      timeout=120)
    assert exposed.returncode == 1
    assert ("the gateway would listen on 0.0.0.0 with no API keys: set keys (LLMOPS_API_KEYS or "
            "auth.keys_file) or bind 127.0.0.1") in exposed.stderr
    assert "Traceback" not in exposed.stderr and "starting the engine" not in exposed.stdout


def test_scopes(project: Path, start_gateway) -> None:
    gw = start_gateway(env={"LLMOPS_API_KEYS": KEYS})
    h = httpx.Client(base_url=gw.url, timeout=30)
    body = {"model": "base", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    assert h.post("/v1/chat/completions", json=body).status_code == 401
    bad = h.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401
    fb_only = h.post("/v1/chat/completions", json=body,
                     headers={"Authorization": "Bearer fb-key-456"})
    assert fb_only.status_code == 403
    ok = h.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer inv-key-123"})
    assert ok.status_code == 200
    rid = ok.headers["x-request-id"]
    assert h.post("/v1/feedback", json={"request_id": rid, "rating": 1},
                  headers={"Authorization": "Bearer inv-key-123"}).status_code == 403
    # feedback is taken only from the key that made the request (or an admin key)
    other = h.post("/v1/feedback", json={"request_id": rid, "rating": 1},
                   headers={"Authorization": "Bearer fb-key-456"})
    assert other.status_code == 403
    assert "accepted only from the key that made it" in other.json()["error"]["message"]
    mine = h.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer app-key-000"})
    assert h.post("/v1/feedback", json={"request_id": mine.headers["x-request-id"], "rating": 1},
                  headers={"Authorization": "Bearer app-key-000"}).status_code == 200
    assert h.post("/v1/feedback", json={"request_id": rid, "rating": 1},
                  headers={"Authorization": "Bearer adm-key-789"}).status_code == 200
    assert h.post("/v1/chat/completions", json=body,
                  headers={"Authorization": "Bearer adm-key-789"}).status_code == 200
    log = gw.output()
    for secret in ("inv-key-123", "fb-key-456", "adm-key-789"):
        assert secret not in log
    from tests.serving.conftest import wait_rows

    rows = wait_rows(project, "inference_log", 3)
    assert set(rows["client"]) == {"env-1", "env-3", "env-4"}
    cells = " ".join(" ".join(map(str, r)) for r in rows.itertuples(index=False))
    assert "inv-key-123" not in cells and "adm-key-789" not in cells
