"""The Prometheus alert rules and the Grafana dashboard in serving/, checked offline.

``promtool`` (Debian's prometheus package, installed by ``make test``) checks the rules and
runs their unit tests (serving/prometheus/alerts_test.yml); every PromQL expression of the
dashboard is parsed by promtool too, and every metric either file reads must be one the
gateway exports (its real registry) or one vLLM exports (names read from vLLM's installed
source), so a renamed metric fails here and not on a dashboard at 3 a.m.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PROMETHEUS = REPO / "serving" / "prometheus"
DASHBOARD = REPO / "serving" / "grafana" / "llmops-gateway.json"
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def _promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def _concrete(expr: str) -> str:
    """A dashboard expression with Grafana's variables filled in, as Prometheus would get it."""
    return (expr.replace("$__rate_interval", "5m").replace('"$model"', '".*"')
            .replace('"$chain"', '".*"').replace('"$key"', '".*"').replace('"$endpoint"', '".*"'))


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def _gateway_metric_names() -> set[str]:
    from llmops.privacy import Redactor
    from llmops.serving.metrics import GatewayMetrics
    from llmops.serving.redaction import RedactionCounter

    metrics = GatewayMetrics()
    # a gateway that redacts counts what it took out (registered only then)
    metrics.registry.register(RedactionCounter(Redactor()))
    return {f.name + s for f in metrics.registry.collect() for s in _SUFFIXES}


def _vllm_metric_names() -> set[str]:
    import importlib.util

    spec = importlib.util.find_spec("vllm")  # where it lies, without importing it (seconds)
    assert spec is not None and spec.origin, "vLLM is not installed"
    source = Path(spec.origin).parent / "v1" / "metrics"
    found = set(re.findall(r'"(vllm:[a-z_]+)"', "".join(
        p.read_text() for p in source.glob("*.py"))))
    assert "vllm:time_to_first_token_seconds" in found, "vLLM's metric names moved"
    return {name + s for name in found for s in _SUFFIXES}


def test_the_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    tested = _promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_catches_a_broken_rule_and_a_wrong_expectation(tmp_path: Path) -> None:
    rules = (PROMETHEUS / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(rules.replace("> 0.05", "> > 0.05", 1))
    broken = _promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    assert broken.returncode != 0 and "parse error" in (broken.stdout + broken.stderr)
    # the unit tests fail when the threshold moves: 10% errors no longer fire at 20%
    (tmp_path / "alerts.yml").write_text(rules.replace("> 0.05", "> 0.2", 1))
    shutil.copy(PROMETHEUS / "alerts_test.yml", tmp_path)
    moved = _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert moved.returncode != 0 and "LlmopsHighErrorRate" in moved.stdout + moved.stderr


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 12
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": _concrete(e)} for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    checked = _promtool("check", "rules", "dashboard.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_the_files_read_is_exported() -> None:
    exported = _gateway_metric_names() | _vllm_metric_names() | {"up"}
    read = {m for e in [*_dashboard_exprs(), *_alert_exprs()] for m in _SELECTOR.findall(e)}
    read -= {"by", "without", "on", "ignoring"}
    assert read, "no metric found in the files"
    assert read <= exported, f"read but exported by nobody: {sorted(read - exported)}"
    # the serving figures the issue names are on the dashboard, under OTel's GenAI names
    for name in ("gen_ai_server_time_to_first_token_seconds_bucket",
                 "gen_ai_server_time_per_output_token_seconds_bucket",
                 "gen_ai_client_token_usage_bucket", "llmops_request_queue_time_seconds_bucket",
                 "vllm:request_queue_time_seconds_bucket"):
        assert name in read, name
