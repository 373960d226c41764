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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import EvaluationError
from llmops.evals.datasets import EvalDataset, load_eval_dataset
from llmops.evals.scorers import default_scorers, judge_scorer, scorers_for
from llmops.registry import model_version
from llmops.stores import connect

__all__ = ["DEFAULT_TRACES", "EvalReport", "evaluate_chain"]

# rows of each dataset traced with their assessments on the fast path (plus every errored row)
DEFAULT_TRACES = 8
# the per-example tables' folder in each dataset's run
EXAMPLES_DIR = "examples"

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
    # dataset -> where its per-example table is in MLflow (the fast path's)
    tables: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def _no_framework_autolog() -> Iterator[None]:
    """LangChain and OpenAI autologging off while the harness runs, then as they were.

    The harness turns them on for the run, which adds a span per chain step to every
    row's trace (each one more store writes); the row's trace keeps the chain's
    inputs and outputs without them.
    """
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    before = {flavor: dict(AUTOLOGGING_INTEGRATIONS.get(flavor) or {})
              for flavor in ("langchain", "openai")}
    for flavor in before:
        with contextlib.suppress(Exception):
            _autolog(flavor)(disable=True, silent=True)
    try:
        yield
    finally:
        for flavor, config in before.items():
            if config and not config.get("disable", False):
                with contextlib.suppress(Exception):
                    _autolog(flavor)(**config)


def _autolog(flavor: str) -> Any:
    import importlib

    return importlib.import_module(f"mlflow.{flavor}").autolog


@contextlib.contextmanager
def _harness_settings(concurrency: int) -> Iterator[None]:
    """``mlflow.genai.evaluate`` reads its settings from the environment.

    Predictions run ``concurrency`` at a time, without the harness's rate limiter
    (it starts at 10 requests/s, meant for hosted APIs; ours is the project's own
    endpoint or an in-process model), and without the extra prediction it makes
    to validate the trace (the predict function is traced already).
    """
    wanted = {
        "MLFLOW_GENAI_EVAL_MAX_WORKERS": str(concurrency),
        "MLFLOW_GENAI_EVAL_MAX_SCORER_WORKERS": "2",  # the scorers are quick local functions
        "MLFLOW_GENAI_EVAL_PREDICT_RATE_LIMIT": "0",
        "MLFLOW_GENAI_EVAL_SCORER_RATE_LIMIT": "0",
        "MLFLOW_GENAI_EVAL_SKIP_TRACE_VALIDATION": "true",
    }
    old = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Predictions:
    """The chain's answers, computed ``concurrency`` at a time ahead of the harness.

    ``mlflow.genai.evaluate`` writes each row's trace and assessments to the
    store from its prediction threads; writing there costs more CPU than a
    prediction through an endpoint. Asked in-line, the engine sat idle while the
    threads wrote. So every answer is requested up front, and the harness's
    predict function only waits for its row's answer (traced as usual): the
    engine stays busy while rows are logged.
    """

    def __init__(self, model: Any, questions: list[str], concurrency: int) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.model = model
        self.questions = questions
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="llmops-eval")
        self.pending: dict[str, Any] = {}
        self._started = threading.Lock()

    def _start(self) -> None:
        """Ask every question; called from the harness's first prediction, once its set-up
        (import hooks for autologging) is done, so no import races that set-up."""
        from collections import deque

        with self._started:
            if self.pending:
                return
            for question in self.questions:
                self.pending.setdefault(question, deque()).append(
                    self.pool.submit(self._answer, question))

    def _answer(self, question: str) -> dict[str, Any]:
        start = time.perf_counter()
        answer = self.model.predict([{"question": question}])[0]
        return {"answer": answer.get("answer", ""), "sources": list(answer.get("sources", [])),
                "latency_ms": (time.perf_counter() - start) * 1000}

    def predict_fn(self) -> Any:
        import mlflow

        @mlflow.trace(name="chain")
        def predict(question: str) -> dict[str, Any]:
            self._start()
            queue = self.pending.get(question)
            if not queue:  # not asked ahead (the harness retried a row): ask now
                return self._answer(question)
            return queue.popleft().result()

        return predict

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _harness(model: Any, dataset: EvalDataset, scorers: list[Any], concurrency: int,
             model_uri: str) -> dict[str, float]:
    """Every row through ``mlflow.genai.evaluate``: a trace per row, in the active run."""
    import mlflow

    answers = _Predictions(model, [r["question"] for r in dataset.rows], concurrency)
    # the harness prints a banner per run to stdout; llmops prints its own summary
    with _harness_settings(concurrency), _no_framework_autolog(), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            result = mlflow.genai.evaluate(data=dataset.records(),
                                           scorers=scorers_for(scorers, dataset.rows),
                                           predict_fn=answers.predict_fn())
        except Exception as exc:  # noqa: BLE001 - the harness wraps the chain's errors
            raise _failed(model_uri, dataset.name, exc) from exc
        finally:
            answers.close()
    return _means(result.metrics)


def _failed(model_uri: str, dataset: str, exc: BaseException) -> EvaluationError:
    return EvaluationError(
        f"evaluating {model_uri} on '{dataset}' failed: "
        f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _answer_all(model: Any, questions: list[str], concurrency: int) -> list[dict[str, Any]]:
    """Every question's answer, ``concurrency`` at a time; a failed row keeps its error."""
    from concurrent.futures import ThreadPoolExecutor

    from llmops.chains import ask

    def one(question: str) -> dict[str, Any]:
        answer = ask(model, question)
        return {**answer, "answer": answer["answer"] or ""}

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="llmops-eval") as pool:
        return list(pool.map(one, questions))


def _value(result: Any) -> float | None:
    value = getattr(result, "value", result)
    return None if value is None else float(value)


def _on_ray(settings: Settings, version: Any, endpoint: str | None, api_key_env: str,
            concurrency: int, cache_salt: str | None) -> Any:
    """A predict function that answers every question on the batch path's Ray actors."""

    def predict(questions: list[str]) -> list[dict[str, Any]]:
        import json

        import pandas as pd

        from llmops.chains.batch import batch_run

        frame = pd.DataFrame({"id": [str(i) for i in range(len(questions))],
                              "question": questions})
        done = batch_run(f"{version.name}/{version.version}", frame, settings,
                         endpoint=endpoint, concurrency=concurrency, progress=False,
                         log=False, max_error_share=1.0, api_key_env=api_key_env,
                         cache_salt=cache_salt).frame
        done = done.set_index("id").loc[frame["id"]]
        return [{"answer": row["answer"] or "", "sources": json.loads(row["sources"] or "[]"),
                 "latency_ms": float(row["latency_ms"] or 0.0), "error": row["error"]}
                for row in done.to_dict("records")]

    return predict


def _fast(model: Any, dataset: EvalDataset, scorers: list[Any], concurrency: int, traces: int,
          model_uri: str, predict: Any = None) -> tuple[dict[str, float], Any, int]:
    """Predict and score every row outside the harness; log the per-example table; trace a
    sample. Returns the metric means, the table and how many traces were promised."""
    from concurrent.futures import ThreadPoolExecutor

    import mlflow
    import pandas as pd

    records = dataset.records()
    questions = [r["inputs"]["question"] for r in records]
    answers = (predict(questions) if predict is not None
               else _answer_all(model, questions, concurrency))
    used = scorers_for(scorers, dataset.rows)

    def score(pair: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, float | None]:
        record, outputs = pair
        if outputs["error"]:  # no answer: nothing to score but the error
            return {s.name: None for s in used}
        return {s.name: _value(s.run(inputs=record["inputs"], outputs=outputs,
                                     expectations=record["expectations"])) for s in used}

    # the scorers are quick local functions, except the judge, which asks the endpoint
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        scores = list(pool.map(score, zip(records, answers, strict=True)))
    table = pd.DataFrame({
        "example_id": [str(row.get("id") or i) for i, row in enumerate(dataset.rows)],
        "question": [r["inputs"]["question"] for r in records],
        "expected": [r["expectations"].get("expected_response") for r in records],
        "answer": [a["answer"] for a in answers],
        "sources": [", ".join(a["sources"]) for a in answers],
        "error": [a["error"] for a in answers],
        **{s.name: [row[s.name] for row in scores] for s in used}})
    means = {s.name: float(table[s.name].dropna().mean()) for s in used
             if table[s.name].notna().any()}
    mlflow.log_table(table, artifact_file=f"{EXAMPLES_DIR}/{dataset.name}.json")
    errored = [i for i, a in enumerate(answers) if a["error"]]
    sample = sorted(set(range(min(traces, len(records)))) | set(errored))
    if sample:
        data = [{**records[i], "outputs": {**answers[i]}} for i in sample]
        with _harness_settings(concurrency), _no_framework_autolog(), \
                contextlib.redirect_stdout(io.StringIO()):
            try:
                mlflow.genai.evaluate(data=data, scorers=used)
            except Exception as exc:  # noqa: BLE001 - reported as the evaluation's failure
                raise _failed(model_uri, dataset.name, exc) from exc
    return means, table, len(sample)


def _check_traces(run_id: str, promised: int, model_uri: str, dataset: str) -> None:
    """Fail loudly when the store lacks a trace the evaluation promised (a lost write)."""
    import mlflow

    if not promised:
        return
    found = mlflow.search_traces(run_id=run_id, return_type="list", max_results=promised + 1)
    if len(found) < promised:
        raise EvaluationError(
            f"evaluating {model_uri} on '{dataset}': {promised - len(found)} of {promised} "
            f"traces are missing from the tracking store (run {run_id}); the store lost "
            "writes, so the evaluation is not complete: run it again")


def _long(table: Any) -> list[tuple[str, str, float]]:
    """The per-example table's scores as (example, metric, value) rows."""
    metrics = [c for c in table.columns
               if c not in ("example_id", "question", "expected", "answer", "sources", "error")]
    return [(str(row["example_id"]), metric, float(row[metric]))
            for row in table.to_dict("records") for metric in metrics
            if row[metric] is not None and row[metric] == row[metric]]


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
    traces: int | str = DEFAULT_TRACES,
    engine: str = "local",
) -> EvalReport:
    """Evaluate the registered chain ``ref`` on each dataset; one MLflow run, nested per dataset.

    With ``endpoint`` (a gateway URL) the chain's chat model calls that endpoint, and
    predictions run ``concurrency`` at a time; without it the chain runs as logged.
    ``judge`` adds the LLM-as-judge scorer, which asks ``endpoint``. Every dataset
    is read and checked before anything is predicted or logged. The metric means go
    to the run and, with ``record``, to the ``eval_results`` table.

    ``traces`` (a count, the default a few) is the fast path: every answer is predicted and
    scored outside the harness, the per-example table (answers, sources, errors and each
    metric) is logged as one MLflow table per dataset and written to ``eval_results``, and
    only a sample of rows (the first ``traces`` and every row that errored) is traced with
    its assessments. ``traces="all"`` runs every row through ``mlflow.genai.evaluate``.
    Either way the run is checked afterwards: a trace it promised that is not in the store
    fails the evaluation. ``engine="ray"`` predicts on the batch path's Ray actors (each
    with the chain loaded once; ``concurrency`` requests in flight per actor) instead of
    threads in this process (fast path only).
    """
    import mlflow

    from llmops.chains.registry import load_at_endpoint
    from llmops.lakehouse import append_rows

    settings = settings or load_settings()
    if engine not in ("local", "ray"):
        raise EvaluationError(f"unknown engine '{engine}': 'local' or 'ray'")
    if engine == "ray" and traces == "all":
        raise EvaluationError("--traces all runs every row through MLflow's harness in this "
                              "process: use a count of traces with --engine ray")
    if traces != "all" and (not isinstance(traces, int) or isinstance(traces, bool)
                            or traces < 0):
        raise EvaluationError(f"traces must be a count of rows (0 or more) or 'all', not "
                              f"{traces!r}")
    if judge and not endpoint:
        raise EvaluationError("the LLM-as-judge scorer asks the serving endpoint: pass --endpoint")
    loaded: list[EvalDataset] = [load_eval_dataset(spec, settings)
                                 for spec in (datasets or ["evals/golden.jsonl"])]
    version = model_version(ref, settings)
    model_uri = f"models:/{version.name}/{version.version}"
    # An evaluation's requests salt the engine's prefix cache with a salt of their own: its
    # answers then never come from prompts that other traffic (or an earlier evaluation)
    # left in the cache, which in bf16 round differently from a fresh prefill and flip some
    # greedy answers (2 of 24 measured on the CPU engine), so a version scores the same
    # whatever the engine served before. Within the run, repeated prompts reuse the cache.
    salt = f"llmops-eval-{uuid.uuid4().hex}" if endpoint else None
    if endpoint:
        base_url = endpoint.rstrip("/").removesuffix("/v1") + "/v1"
        model, _ = load_at_endpoint(version, base_url, judge_model, api_key_env=api_key_env,
                                    cache_salt=salt)
    else:
        model = mlflow.pyfunc.load_model(model_uri)
    scorers = default_scorers()
    if judge and endpoint:
        scorers.append(judge_scorer(endpoint, judge_model, os.environ.get(api_key_env)))
    report = EvalReport(run_id="", model_uri=model_uri, name=version.name,
                        version=str(version.version))
    start = time.perf_counter()
    examples: dict[str, Any] = {}
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
            with mlflow.start_run(run_name=dataset.name, nested=True) as nested:
                if traces == "all":
                    means = _harness(model, dataset, scorers, concurrency, model_uri)
                    promised = len(dataset.rows)
                else:
                    predict = (_on_ray(settings, version, endpoint, api_key_env, concurrency,
                                       salt)
                               if engine == "ray" else None)
                    means, table, promised = _fast(model, dataset, scorers, concurrency, traces,
                                                   model_uri, predict)
                    examples[dataset.name] = table
                    report.tables[dataset.name] = (f"{nested.info.artifact_uri}/"
                                                   f"{EXAMPLES_DIR}/{dataset.name}.json")
            _check_traces(nested.info.run_id, promised, model_uri, dataset.name)
            report.metrics[dataset.name] = means
            mlflow.log_metrics({f"{dataset.name}.{k}": v for k, v in means.items()})
        report.seconds = time.perf_counter() - start
    if record:
        now = datetime.now(timezone.utc)
        rows = [{"run_id": report.run_id, "ts": now, "model_uri": model_uri, "dataset": name,
                 "metric": metric, "value": value}
                for name, values in report.metrics.items() for metric, value in values.items()]
        rows += [{"run_id": report.run_id, "ts": now, "model_uri": model_uri, "dataset": name,
                  "metric": metric, "value": value, "example_id": example}
                 for name, table in examples.items()
                 for example, metric, value in _long(table)]
        append_rows(settings.lakehouse, "eval_results", rows,
                    commit_metadata={"llmops.eval_run": report.run_id or uuid.uuid4().hex})
    return report
