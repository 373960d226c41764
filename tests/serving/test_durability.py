"""Nothing acknowledged is lost: kill -9 under load, and two gateways writing one lakehouse."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.serving.conftest import wait_rows


def load(url: str, stop: threading.Event, acked: list, fb_acked: list, tag: str) -> None:
    """Send chat requests and feedback until stopped; keep what the gateway acknowledged."""
    with httpx.Client(base_url=url, timeout=30) as h:
        i = 0
        while not stop.is_set():
            rid = f"{tag}-{i}"
            i += 1
            try:
                resp = h.post("/v1/chat/completions", headers={"X-Request-Id": rid}, json={
                    "model": "base", "max_tokens": 2,
                    "messages": [{"role": "user", "content": f"question {rid}"}]})
                if resp.status_code == 200:
                    server_id = resp.headers["x-request-id"]  # the row's key
                    acked.append(server_id)
                    fb = h.post("/v1/feedback", json={"request_id": server_id, "rating": 1})
                    if fb.status_code == 200:
                        fb_acked.append(fb.json()["feedback_id"])
            except httpx.HTTPError:
                time.sleep(0.05)  # the gateway is down: keep trying until told to stop


def wait_until(done, what: str, timeout: float = 180) -> None:
    """Poll ``done()`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while not done():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def test_kill_dash_nine_under_load_loses_nothing(project: Path, start_gateway) -> None:
    port = free_port()
    gw = start_gateway(port=port)
    stop = threading.Event()
    acked: list[str] = []
    fb_acked: list[str] = []
    workers = [threading.Thread(target=load, args=(gw.url, stop, acked, fb_acked, f"w{n}"),
                                daemon=True)
               for n in range(4)]
    for w in workers:
        w.start()
    wait_until(lambda: len(acked) >= 40, "40 acknowledged requests")
    gw.kill9()
    killed_at = len(acked)
    gw2 = start_gateway(port=port)  # replays its write-ahead log at start
    wait_until(lambda: len(acked) >= killed_at + 20, "20 requests after the restart")
    stop.set()
    for w in workers:
        w.join(timeout=60)
    rows = wait_rows(project, "inference_log", len(acked), timeout=60)
    logged = rows["request_id"].tolist()
    assert set(acked) <= set(logged), f"lost {len(set(acked) - set(logged))} acknowledged requests"
    assert len(logged) == len(set(logged)), "a request was logged twice"
    fb = wait_rows(project, "feedback", len(fb_acked), timeout=60)
    assert set(fb_acked) <= set(fb["feedback_id"]) and fb["feedback_id"].is_unique
    gw2.stop()
    # a clean stop commits everything: no segment is left behind
    assert not list((project / ".llmops" / "dev" / "wal").rglob("*.jsonl"))


def test_two_gateways_share_the_tables(project: Path, start_gateway) -> None:
    a = start_gateway()
    b = start_gateway()
    stop = threading.Event()
    acked_a: list[str] = []
    acked_b: list[str] = []
    fb: list[str] = []
    threads = [
        threading.Thread(target=load, args=(a.url, stop, acked_a, fb, "a"), daemon=True),
        threading.Thread(target=load, args=(b.url, stop, acked_b, fb, "b"), daemon=True),
    ]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked_a) >= 25 and len(acked_b) >= 25, "25 requests per gateway")
    stop.set()
    for t in threads:
        t.join(timeout=60)
    acked = acked_a + acked_b
    rows = wait_rows(project, "inference_log", len(acked), timeout=60)
    missing = set(acked) - set(rows["request_id"])
    assert sorted(rows["request_id"]) == sorted(acked), (
        f"{len(rows)} rows for {len(acked)} acknowledged requests; missing "
        f"{len(missing & set(acked_a))} of gateway A's {len(acked_a)} and "
        f"{len(missing & set(acked_b))} of B's {len(acked_b)}\n"
        f"{a.diagnosis()}\n{b.diagnosis()}")
    feedback = wait_rows(project, "feedback", len(fb), timeout=60)
    assert sorted(feedback["feedback_id"]) == sorted(fb), f"{a.diagnosis()}\n{b.diagnosis()}"

    # feedback sent to one gateway for a request the other served (and has flushed) is
    # accepted, as a replica behind a load balancer gets it; an unknown id is still 404
    with httpx.Client(base_url=b.url, timeout=30) as h:
        crossed = h.post("/v1/feedback", json={"request_id": acked_a[0], "rating": -1,
                                               "correction": "from the other replica"})
        assert crossed.status_code == 200, crossed.text
        assert h.post("/v1/feedback", json={"request_id": "not-a-request",
                                            "rating": 1}).status_code == 404
    rows = wait_rows(project, "feedback", len(fb) + 1, timeout=60)
    mine = rows[rows["feedback_id"] == crossed.json()["feedback_id"]]
    assert list(mine["request_id"]) == [acked_a[0]]
    assert list(mine["correction"]) == ["from the other replica"]
