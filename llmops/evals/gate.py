"""The promotion gate: the ``@staging`` candidate against the ``@production`` baseline.

Compliance first (description, exact prompt and index versions, a signature),
then both versions are evaluated on the same datasets and compared under the
rules of ``evals/gate.yaml``. A pass moves ``@production`` to the candidate; a
fail tags the candidate rejected with the reasons. Either way the outcome is
recorded on the model version and in ``eval_results``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import ModelNotFoundError
from llmops.evals.config import GateConfig, MetricRule, load_gate_config
from llmops.evals.runs import EvalReport, evaluate_chain
from llmops.registry import model_version, promote

__all__ = ["GateResult", "check_compliance", "compare_reports", "run_gate"]

_EXACT_PROMPT = re.compile(r"^[A-Za-z0-9_.\-]+/\d+$")


@dataclass
class GateResult:
    name: str
    candidate: str
    baseline: str | None
    passed: bool
    reasons: list[str] = field(default_factory=list)
    candidate_report: EvalReport | None = None
    baseline_report: EvalReport | None = None
    promoted: bool = False  # False on a pass with promote_on_pass=False


def check_compliance(version: Any, config: GateConfig) -> list[str]:
    """What the candidate lacks to be considered at all (empty when compliant)."""
    import mlflow
    from mlflow.models import Model

    problems = []
    tags = version.tags or {}
    if config.require_description and not (version.description or "").strip():
        problems.append("it has no description (set CONFIG['description'] in the chain file)")
    if not _EXACT_PROMPT.match(tags.get("llmops.prompt", "")):
        problems.append("it does not pin an exact prompt version (tag llmops.prompt)")
    if config.require_index_version and "llmops.index_collection" in tags and not tags.get(
            "llmops.index_version"):
        problems.append("its retriever pins no index version (run llmops index update first)")
    try:
        local = mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}")
        if Model.load(local).signature is None:
            problems.append("it was logged without a signature")
    except Exception as exc:  # noqa: BLE001 - an unreadable model is not compliant
        problems.append(f"its model cannot be read ({exc.__class__.__name__})")
    return problems


def compare_reports(candidate: EvalReport, baseline: EvalReport | None,
                    config: GateConfig) -> list[str]:
    """Why the candidate fails the comparison (empty when it passes)."""
    reasons = []
    if not candidate.metrics:
        return ["the candidate has no evaluation results (every dataset was empty)"]
    rules = {config.primary: MetricRule(), **config.metrics}
    for dataset, values in candidate.metrics.items():
        for metric, rule in rules.items():
            if metric not in values:
                if metric == config.primary:
                    reasons.append(f"{dataset}: the primary metric {metric} was not measured")
                continue
            got = values[metric]
            sign = 1 if rule.higher_is_better else -1
            base = (baseline.metrics.get(dataset) or {}).get(metric) if baseline else None
            if base is None:
                if rule.threshold is not None and sign * (got - rule.threshold) < 0:
                    reasons.append(f"{dataset}: {metric} {got:.3f} is "
                                   f"{'below' if sign > 0 else 'above'} the threshold "
                                   f"{rule.threshold:.3f}")
                continue
            tol = rule.tolerance
            limit = base - tol if rule.higher_is_better else base * (1 + tol)
            if sign * (got - limit) < -1e-12:
                reasons.append(f"{dataset}: {metric} {got:.3f} vs production {base:.3f} "
                               f"({'must not fall' if metric == config.primary else 'beyond'} "
                               f"tolerance {tol})")
    return reasons


# Evaluations this process already ran, by what decides their outcome: the registry and the
# exact model version, the endpoint, the judge and the dataset's content. A gate reuses them
# for the baseline (and a candidate gated again) instead of asking every question again.
_DONE: dict[tuple[str, str, str, bool, str], tuple[EvalReport, str]] = {}


def _dataset_key(spec: str, settings: Settings) -> str:
    from llmops.evals.datasets import load_eval_dataset
    from llmops.lineage import content_hash

    dataset = load_eval_dataset(spec, settings)
    return f"{dataset.name}:{content_hash(dataset.rows)}"


def _evaluate(ref: str, config: GateConfig, kwargs: dict[str, Any]) -> EvalReport:
    """``evaluate_chain`` on the gate's datasets, reusing this process's results on the same
    data; only the datasets not evaluated yet are evaluated (one MLflow run)."""
    settings = kwargs["settings"]
    keys = {spec: (settings.registry_uri, ref, config.endpoint or "", config.judge,
                   str(config.traces), _dataset_key(spec, settings))
            for spec in config.datasets}
    todo = [spec for spec in config.datasets if keys[spec] not in _DONE]
    report = None
    if todo:
        report = evaluate_chain(ref, todo, **kwargs)
        for spec in todo:
            _DONE[keys[spec]] = (report, keys[spec][-1].split(":", 1)[0])
    merged = EvalReport(run_id=report.run_id if report else "", model_uri="", name="",
                        version="", seconds=report.seconds if report else 0.0)
    for spec in config.datasets:
        done, name = _DONE[keys[spec]]
        merged.model_uri, merged.name, merged.version = done.model_uri, done.name, done.version
        merged.run_id = merged.run_id or done.run_id
        if name in done.metrics:
            merged.metrics[name] = done.metrics[name]
        if name in done.tables:
            merged.tables[name] = done.tables[name]
        merged.rows[name] = done.rows.get(name, 0)
    return merged


def run_gate(name: str, settings: Settings | None = None, config: GateConfig | None = None,
             user: str | None = None, promote_on_pass: bool = True) -> GateResult:
    """Gate ``name@staging``; promote it to ``@production`` on a pass, tag it rejected on a fail.

    ``promote_on_pass=False`` leaves a passing candidate at ``@staging`` (tagged passed), for a
    rollout on live traffic to decide (``llmops rollout start NAME --candidate staging``).
    """
    from mlflow import MlflowClient

    from llmops.lakehouse import append_rows

    settings = settings or load_settings()
    config = config or load_gate_config(settings)
    try:
        candidate = model_version(f"{name}@{config.candidate_alias}", settings)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(
            f"'{name}' has no @{config.candidate_alias} version to gate: log one with "
            f"'llmops chains log FILE --alias {config.candidate_alias}'") from exc
    try:
        baseline = model_version(f"{name}@{config.baseline_alias}", settings)
    except ModelNotFoundError:
        baseline = None
    result = GateResult(name, str(candidate.version),
                        str(baseline.version) if baseline else None, passed=False)
    result.reasons = check_compliance(candidate, config)
    if baseline is not None and str(baseline.version) == str(candidate.version):
        result.reasons.append(f"version {candidate.version} is already @{config.baseline_alias}")
    if not result.reasons:
        kwargs: dict[str, Any] = {"settings": settings, "endpoint": config.endpoint,
                                  "concurrency": config.concurrency, "judge": config.judge,
                                  "traces": config.traces}
        result.candidate_report = _evaluate(f"{name}/{candidate.version}", config, kwargs)
        if baseline is not None:
            result.baseline_report = _evaluate(f"{name}/{baseline.version}", config, kwargs)
        result.reasons = compare_reports(result.candidate_report, result.baseline_report,
                                         config)
    result.passed = not result.reasons
    result.promoted = result.passed and promote_on_pass

    client = MlflowClient()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    outcome = "passed" if result.passed else "rejected"
    tags = {"llmops.gate.status": outcome, "llmops.gate.at": stamp,
            "llmops.gate.baseline": result.baseline or "none",
            "llmops.gate.reasons": json.dumps(result.reasons)[:4000],
            "llmops.gate.promoted": "true" if result.promoted else "false",
            "llmops.gate.eval_run": result.candidate_report.run_id
            if result.candidate_report else ""}
    if not result.passed:
        tags["llmops.rejected"] = "; ".join(result.reasons)[:4000]
    for key, value in tags.items():
        client.set_model_version_tag(name, candidate.version, key, value)
    append_rows(settings.lakehouse, "eval_results", [{
        "run_id": result.candidate_report.run_id if result.candidate_report else "",
        "ts": datetime.now(timezone.utc), "model_uri": f"models:/{name}/{candidate.version}",
        "dataset": "gate",
        "metric": "gate_passed", "value": 1.0 if result.passed else 0.0}])
    if result.promoted:
        promote(name, config.baseline_alias, int(candidate.version), settings=settings, user=user)
    return result
