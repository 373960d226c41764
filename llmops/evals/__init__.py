"""Evaluation: scorers, evaluation runs, the promotion gate, and monitoring."""

from __future__ import annotations

from llmops.evals.config import (
    GateConfig,
    MetricRule,
    MonitorConfig,
    load_gate_config,
    load_monitor_config,
)
from llmops.evals.datasets import EvalDataset, load_eval_dataset
from llmops.evals.gate import GateResult, check_compliance, compare_reports, run_gate
from llmops.evals.monitoring import MonitorReport, run_monitor
from llmops.evals.runs import EvalReport, evaluate_chain
from llmops.evals.scorers import (
    default_scorers,
    exact_match_score,
    judge_scorer,
    normalize_answer,
    token_f1,
)

__all__ = [
    "EvalDataset",
    "EvalReport",
    "GateConfig",
    "GateResult",
    "MetricRule",
    "MonitorConfig",
    "MonitorReport",
    "check_compliance",
    "compare_reports",
    "default_scorers",
    "evaluate_chain",
    "exact_match_score",
    "judge_scorer",
    "load_eval_dataset",
    "load_gate_config",
    "load_monitor_config",
    "normalize_answer",
    "run_gate",
    "run_monitor",
    "token_f1",
]
