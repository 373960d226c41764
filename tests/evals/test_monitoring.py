"""Monitoring over a window of the tables: per-version figures, thresholds, the table, the plot."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from mlflow import MlflowClient

from llmops.evals import MonitorConfig, run_monitor
from llmops.lakehouse import append_rows, read_table
from tests.conftest import run_cli

END = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def log_rows(version: str, n: int, start: datetime, status: int = 200, latency: float = 50.0,
             prefix: str = "") -> list[dict]:
    return [{"request_id": f"{prefix}{version}-{i}", "ts": start + timedelta(minutes=i),
             "env": "dev", "endpoint": "/v1/chains/docs-qa/invoke", "model": "base",
             "chain": "docs-qa", "chain_version": version, "prompt": "qa", "prompt_version": "1",
             "request": "{}", "response": "x", "status": status, "latency_ms": latency + i}
            for i in range(n)]


def thumbs(request_ids: list[str], rating: int, at: datetime) -> list[dict]:
    return [{"feedback_id": f"f-{rid}", "request_id": rid, "ts": at, "rating": rating,
             "source": "web"} for rid in request_ids]


@pytest.fixture
def traffic(settings):
    lake = settings.lakehouse
    start = END - timedelta(hours=3)
    v1 = log_rows("1", 10, start)
    v2 = log_rows("2", 10, start + timedelta(hours=1), latency=400.0)
    errors = log_rows("2", 2, start + timedelta(hours=2), status=503, prefix="e")
    old = log_rows("1", 5, END - timedelta(days=3), prefix="old")  # outside the window
    append_rows(lake, "inference_log", v1 + v2 + errors + old)
    append_rows(lake, "feedback", [
        *thumbs([r["request_id"] for r in v1[:4]], 1, END - timedelta(hours=1)),
        *thumbs([r["request_id"] for r in v2[:4]], -1, END - timedelta(hours=1)),
        {"feedback_id": "s1", "request_id": v2[5]["request_id"], "ts": END, "score": 2,
         "source": "api"},
        *thumbs([r["request_id"] for r in old], -1, END - timedelta(days=3)),
    ])
    return settings


def test_figures_per_version_and_a_crossed_threshold(traffic) -> None:
    config = MonitorConfig(window_hours=6, group_by=["chain", "chain_version"], min_requests=5,
                           max_error_rate=0.2, min_thumbs_up_rate=0.5)
    report = run_monitor(traffic, config, end=END)
    groups = {g["group"]: g for g in report.groups}
    overall, v1, v2 = groups["all"], groups["chain=docs-qa,chain_version=1"], \
        groups["chain=docs-qa,chain_version=2"]
    assert overall["requests"] == 22 and overall["errors"] == 2
    assert overall["error_rate"] == pytest.approx(2 / 22)
    assert v1["thumbs_up_rate"] == 1.0 and v2["thumbs_up_rate"] == 0.0
    assert v2["mean_score"] == 2.0 and v2["feedback_coverage"] == pytest.approx(5 / 12)
    assert v1["latency_p50_ms"] == pytest.approx(54.5) and v2["latency_p50_ms"] > 400
    assert v2["error_rate"] == pytest.approx(2 / 12)
    # v2's thumbs-up rate is below 0.5; v1 and the error rates are fine
    assert report.breaches == ["chain=docs-qa,chain_version=2: thumbs-up rate 0 is below 0.5"]
    rows = read_table(traffic.lakehouse, "monitoring")
    assert len(rows) == 3 and set(rows["run_id"]) == {report.run_id}
    bad = rows[rows["group"] == "chain=docs-qa,chain_version=2"].iloc[0]
    assert bad["status"] == "alert" and "thumbs-up" in json.loads(bad["breaches"])[0]
    assert set(rows[rows["group"] != bad["group"]]["status"]) == {"ok"}
    assert report.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = MlflowClient().get_run(report.run_id)
    assert run.data.tags["llmops.monitor.status"] == "alert"
    assert run.data.metrics["requests"] == 22
    artifacts = {a.path for a in MlflowClient().list_artifacts(report.run_id)}
    assert {"monitoring.png", "breaches.txt"} <= artifacts


def test_empty_window_is_ok(settings) -> None:
    report = run_monitor(settings, MonitorConfig(), end=END)
    assert report.ok and report.overall["requests"] == 0


def test_cli_exits_3_when_a_threshold_is_crossed(traffic, project) -> None:
    (project / "evals").mkdir(exist_ok=True)
    (project / "evals" / "monitor.yaml").write_text(
        "window_hours: 6\ngroup_by: [chain_version]\nmax_error_rate: 0.1\n"
        "min_thumbs_up_rate: null\n")
    crossed = run_cli("monitor", "run", "--until", END.isoformat(), cwd=project)
    assert crossed.returncode == 3, crossed.stderr
    assert "error: monitoring thresholds crossed" in crossed.stderr
    assert "chain_version=2: error rate 0.167 is above 0.1" in crossed.stderr
    assert "chain_version=1" in crossed.stdout
    fine = run_cli("monitor", "run", "--until", END.isoformat(), "--hours", "0.5", cwd=project)
    assert fine.returncode == 0, fine.stderr
    bad = run_cli("monitor", "run", "--hours", "-1", cwd=project)
    assert bad.returncode == 2
