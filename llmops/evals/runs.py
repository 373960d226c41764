"""Evaluation runs: a registered chain against datasets, scored, logged to MLflow and ``eval_results``."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import EvaluationError
from llmops.evals.datasets import EvalDataset, load_eval_dataset
from llmops.evals.scorers import default_scorers, judge_scorer
from llmops.stores import connect

__all__ = ["EvalReport", "evaluate_chain"]

log = logging.getLogger(__name__)


@dataclass
class EvalReport:
    """What an evaluation run measured: ``metrics[dataset][metric]`` (means over the rows)."""

    run_id: str
    model_uri: str
    name: str
    version: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@contextlib.contextmanager
def _workers(concurrency: int) -> Iterator[None]:
    """``mlflow.genai.evaluate`` reads its prediction thread count from the environment."""
    old = os.environ.get("MLFLOW_GENAI_EVAL_MAX_WORKERS")
    os.environ["MLFLOW_GENAI_EVAL_MAX_WORKERS"] = str(concurrency)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_GENAI_EVAL_MAX_WORKERS", None)
        else:
            os.environ["MLFLOW_GENAI_EVAL_MAX_WORKERS"] = old


def _predictor(model: Any) -> Any:
    import mlflow

    @mlflow.trace(name="chain")
    def predict(question: str) -> dict[str, Any]:
        start = time.perf_counter()
        answer = model.predict([{"question": question}])[0]
        return {"answer": answer.get("answer", ""), "sources": list(answer.get("sources", [])),
                "latency_ms": (time.perf_counter() - start) * 1000}

    return predict


def _means(metrics: dict[str, Any]) -> dict[str, float]:
    return {key.removesuffix("/mean"): float(value) for key, value in metrics.items()
            if key.endswith("/mean") and value == value}


def evaluate_chain(
    ref: str,
    datasets: list[str | Path] | None = None,
    settings: Settings | None = None,
    endpoint: str | None = None,
    concurrency: int = 4,
    judge: bool = False,
    judge_model: str = "base",
    api_key_env: str = "LLMOPS_API_KEY",
    record: bool = True,
) -> EvalReport:
    """Evaluate the registered chain ``ref`` on each dataset; one MLflow run, nested per dataset.

    With ``endpoint`` (a gateway URL) the chain's chat model calls that endpoint, and
    predictions run ``concurrency`` at a time; without it the chain runs as logged.
    ``judge`` adds the LLM-as-judge scorer, which asks ``endpoint``. Every dataset
    is read and checked before anything is predicted or logged. The metric means go
    to the run and, with ``record``, to the ``eval_results`` table.
    """
    import mlflow

    from llmops.chains.registry import load_at_endpoint, model_version
    from llmops.lakehouse import append_rows
    from llmops.serving.wal import utcnow

    settings = settings or load_settings()
    if judge and not endpoint:
        raise EvaluationError("the LLM-as-judge scorer asks the serving endpoint: pass --endpoint")
    loaded: list[EvalDataset] = [load_eval_dataset(spec, settings)
                                 for spec in (datasets or ["evals/golden.jsonl"])]
    version = model_version(ref, settings)
    model_uri = f"models:/{version.name}/{version.version}"
    if endpoint:
        base_url = endpoint.rstrip("/").removesuffix("/v1") + "/v1"
        model, _ = load_at_endpoint(version, base_url, judge_model, api_key_env=api_key_env)
    else:
        model = mlflow.pyfunc.load_model(model_uri)
    scorers = default_scorers()
    if judge and endpoint:
        scorers.append(judge_scorer(endpoint, judge_model, os.environ.get(api_key_env)))
    predict = _predictor(model)
    report = EvalReport(run_id="", model_uri=model_uri, name=version.name,
                        version=str(version.version))
    start = time.perf_counter()
    connect(settings)
    with mlflow.start_run(run_name=f"eval-{version.name}-v{version.version}") as run:
        report.run_id = run.info.run_id
        mlflow.set_tags({"llmops.eval.model_uri": model_uri, "llmops.eval.endpoint": endpoint or "",
                         "llmops.eval.datasets": ",".join(d.name for d in loaded)})
        for dataset in loaded:
            report.rows[dataset.name] = len(dataset.rows)
            if not dataset.rows:
                log.warning("dataset %s has no rows; skipped", dataset.name)
                continue
            # the harness prints a banner per run to stdout; llmops prints its own summary
            with mlflow.start_run(run_name=dataset.name, nested=True), _workers(concurrency), \
                    contextlib.redirect_stdout(io.StringIO()):
                try:
                    result = mlflow.genai.evaluate(data=dataset.records(), scorers=scorers,
                                                   predict_fn=predict)
                except Exception as exc:  # noqa: BLE001 - the harness wraps the chain's errors
                    raise EvaluationError(
                        f"evaluating {model_uri} on '{dataset.name}' failed: "
                        f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    ) from exc
            means = _means(result.metrics)
            report.metrics[dataset.name] = means
            mlflow.log_metrics({f"{dataset.name}.{k}": v for k, v in means.items()})
        report.seconds = time.perf_counter() - start
    if record:
        now = utcnow()
        rows = [{"run_id": report.run_id, "ts": now, "model_uri": model_uri, "dataset": name,
                 "metric": metric, "value": value}
                for name, values in report.metrics.items() for metric, value in values.items()]
        append_rows(settings.lakehouse, "eval_results", rows,
                    commit_metadata={"llmops.eval_run": report.run_id or uuid.uuid4().hex})
    return report
