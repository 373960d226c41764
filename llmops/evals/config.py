"""Settings of the promotion gate (``evals/gate.yaml``) and of monitoring (``evals/monitor.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops.config import Settings
from llmops.yamlfile import load_yaml_model

__all__ = ["GateConfig", "MetricRule", "MonitorConfig", "load_gate_config", "load_monitor_config"]

GATE_FILE = Path("evals") / "gate.yaml"
MONITOR_FILE = Path("evals") / "monitor.yaml"


class MetricRule(BaseModel):
    """How one metric compares between the candidate and the baseline."""

    model_config = ConfigDict(extra="forbid")

    higher_is_better: bool = Field(True, description="False for latency-like metrics.")
    tolerance: float = Field(
        0.0, ge=0, description="How far the candidate may fall behind the baseline (absolute; "
                               "relative for latency-like metrics: 0.5 = 50% slower).")
    threshold: float | None = Field(
        None, description="The fixed bar used when there is no production version yet.")


class GateConfig(BaseModel):
    """The promotion gate: which datasets, which metric must not fall, what else may move."""

    model_config = ConfigDict(extra="forbid")

    datasets: list[str] = Field(
        default_factory=lambda: ["evals/golden.jsonl", "feedback"],
        description="JSON lines files (relative to the project) and/or 'feedback'.")
    primary: str = Field("token_f1", description="The metric that must not fall.")
    metrics: dict[str, MetricRule] = Field(
        default_factory=lambda: {"token_f1": MetricRule(threshold=0.05)},
        description="Per-metric rules; metrics not listed are reported, not gated.")
    candidate_alias: str = Field("staging", description="The alias of the candidate.")
    baseline_alias: str = Field("production", description="The alias the gate moves on a pass.")
    require_description: bool = Field(True, description="The candidate must have a description.")
    require_index_version: bool = Field(
        True, description="A chain with a retriever must pin an exact index version.")
    concurrency: int = Field(4, ge=1, description="Predictions run at once.")
    endpoint: str | None = Field(
        None, description="Serving endpoint (gateway URL): chains call it and the judge asks it.")
    judge: bool = Field(False, description="Add the LLM-as-judge scorer (needs an endpoint).")
    traces: int | Literal["all"] = Field(
        8, description="Rows per dataset traced with their assessments (plus every errored "
                       "row); every row is scored and kept in the run's per-example table. "
                       "'all' traces every row through mlflow.genai.evaluate (slower).")


class MonitorConfig(BaseModel):
    """Monitoring: the window, and the thresholds that make a run fail."""

    model_config = ConfigDict(extra="forbid")

    window_hours: float = Field(24.0, gt=0, description="How far back a run looks.")
    group_by: list[Literal["chain", "chain_version", "prompt", "prompt_version", "model",
                           "adapter"]] = Field(
        default_factory=lambda: ["chain", "chain_version", "prompt_version", "model", "adapter"],
        description="The columns a version is told apart by.")
    min_requests: int = Field(
        5, ge=1, description="Groups with fewer requests are reported but not judged.")
    max_error_rate: float | None = Field(0.05, ge=0, le=1, description="Errors (5xx) / requests.")
    max_latency_p95_ms: float | None = Field(None, gt=0, description="95th percentile latency.")
    min_thumbs_up_rate: float | None = Field(
        0.5, ge=0, le=1, description="Thumbs up / thumbs given (judged with 3+ thumbs).")
    min_mean_score: float | None = Field(None, ge=1, le=5, description="Mean 1-5 score.")
    min_feedback_coverage: float | None = Field(
        None, ge=0, le=1, description="Requests with feedback / requests.")


def load_gate_config(settings: Settings, path: Path | None = None) -> GateConfig:
    """``evals/gate.yaml`` (defaults where the file is missing)."""
    return load_yaml_model(Path(path) if path else settings.root / GATE_FILE, GateConfig,
                           what="gate config", missing_ok=True)


def load_monitor_config(settings: Settings, path: Path | None = None) -> MonitorConfig:
    """``evals/monitor.yaml`` (defaults where the file is missing)."""
    return load_yaml_model(Path(path) if path else settings.root / MONITOR_FILE, MonitorConfig,
                           what="monitor config", missing_ok=True)
