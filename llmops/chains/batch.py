"""Batch inference: a registered chain over a table, on the batch path (Ray actors).

Each actor loads the chain version once; its chat model is the serving endpoint when one is
given (each actor keeps ``concurrency`` requests in flight, so the endpoint sees at most
actors x concurrency), else the chain's own model as logged. Output rows hold the answer,
its sources, the versions that made it and the error; every row also goes to
``inference_log`` with endpoint ``batch``, in the same chunks as the output commits.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from llmops.batch import BatchResult, BatchWorker, run_batch
from llmops.config import Settings
from llmops.registry import model_version

__all__ = ["ChainWorker", "ask", "batch_run"]


def ask(model: Any, question: Any) -> dict[str, Any]:
    """One question to a loaded chain, timed; a failure is kept as the row's ``error``.

    Returns ``answer``, ``sources`` (a list), ``prompt_version`` (the prompt's NAME/VERSION),
    ``index_version``, ``latency_ms`` and ``error`` (None on success).
    """
    start = time.perf_counter()
    try:
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"the question is {'empty' if question == '' else repr(question)[:80]}")
        answer = model.predict([{"question": question}])[0]
    except Exception as exc:  # noqa: BLE001 - this row's error; the other rows go on
        return {"answer": None, "sources": [], "prompt_version": None, "index_version": None,
                "latency_ms": (time.perf_counter() - start) * 1000,
                "error": f"{exc.__class__.__name__}: {str(exc)[:500]}"}
    return {"answer": answer.get("answer"), "sources": list(answer.get("sources") or []),
            "prompt_version": answer.get("prompt"), "index_version": answer.get("index_version"),
            "latency_ms": (time.perf_counter() - start) * 1000, "error": None}


class ChainWorker(BatchWorker):
    """One chain version per actor; answers a batch ``concurrency`` questions at a time."""

    output_schema: ClassVar[dict[str, str]] = {
        "answer": "string", "sources": "string", "chain": "string", "chain_version": "string",
        "prompt_version": "string",  # the prompt's NAME/VERSION
        "index_version": "string", "latency_ms": "float64"}

    def __init__(self, settings: Settings, name: str, version: str, endpoint: str | None,
                 question_column: str = "question", concurrency: int = 4,
                 api_key_env: str = "LLMOPS_API_KEY") -> None:
        from concurrent.futures import ThreadPoolExecutor

        import mlflow.pyfunc

        from llmops.chains.registry import load_at_endpoint
        from llmops.stores import connect

        connect(settings)
        found = model_version(f"{name}/{version}", settings)
        if endpoint:
            base_url = endpoint.rstrip("/").removesuffix("/v1") + "/v1"
            self.model, _ = load_at_endpoint(found, base_url, api_key_env=api_key_env)
        else:
            self.model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        self.name, self.version, self.column = name, str(version), question_column
        self.pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="llmops-batch")

    def process(self, rows: Any) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self.pool.map(self._one, rows[self.column].tolist())))

    def _one(self, question: Any) -> dict[str, Any]:
        row = ask(self.model, question)
        row["sources"] = json.dumps(row["sources"]) if row["error"] is None else None
        return {"chain": self.name, "chain_version": self.version, **row}


def batch_run(ref: str, source: Any, settings: Settings, output: Path | None = None, *,
              endpoint: str | None = None, question_column: str = "question",
              id_column: str = "id", keep: list[str] | None = None, actors: int | None = None,
              concurrency: int = 4, batch_size: int = 16, max_error_share: float = 0.1,
              commit_rows: int = 256, progress: bool = True, log: bool = True,
              api_key_env: str = "LLMOPS_API_KEY", vllm: bool = False, engines: int = 1,
              engine_kwargs: dict[str, Any] | None = None) -> BatchResult:
    """Answer every row of ``source`` with the registered chain ``ref`` (NAME@ALIAS, NAME/V).

    ``output`` is a Delta table folder (a rerun skips the rows it holds) or None for a frame.
    With ``log`` every answered row goes to ``inference_log`` with endpoint ``batch``.
    With ``vllm`` the chain's model runs as vLLM inside the job (``engines`` engines, each on
    a GPU where the cluster has them; see :mod:`llmops.chains.vllm_batch`), not at an endpoint.
    """
    from llmops.errors import BatchError

    found = model_version(ref, settings)
    job = f"{found.name}/{found.version}"
    on_commit = _inference_log(settings, question_column, id_column) if log else None
    if vllm:
        if endpoint:
            raise BatchError("give an endpoint or vLLM in the job, not both")
        from llmops.chains.vllm_batch import PromptWorker, engine_model, vllm_stages

        model, adapter = engine_model(settings, job)
        kept = [c for c in [question_column, *(keep or [])] if c != id_column]
        return run_batch(
            f"batch {job} (vLLM)", source, PromptWorker, settings, output=output,
            id_column=id_column, required=[question_column], keep=kept,
            worker_kwargs={"settings": settings, "name": found.name,
                           "version": str(found.version), "question_column": question_column},
            batch_size=batch_size, actors=actors, max_error_share=max_error_share,
            commit_rows=commit_rows, progress=progress, on_commit=on_commit,
            cpus_per_actor=0.25,  # retrieval and a prompt: the engine does the heavy work
            then=vllm_stages(model, adapter, id_column, kept, engines=engines,
                             batch_size=batch_size, engine_kwargs=engine_kwargs))
    return run_batch(
        f"batch {job}", source, ChainWorker, settings, output=output, id_column=id_column,
        required=[question_column], keep=[question_column, *(keep or [])],
        worker_kwargs={"settings": settings, "name": found.name, "version": str(found.version),
                       "endpoint": endpoint, "question_column": question_column,
                       "concurrency": concurrency, "api_key_env": api_key_env},
        batch_size=batch_size, actors=actors, max_error_share=max_error_share,
        commit_rows=commit_rows, progress=progress, on_commit=on_commit)


def _inference_log(settings: Settings, question_column: str, id_column: str) -> Any:
    from llmops.lakehouse import append_rows

    run = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")

    def write(chunk: Any) -> None:
        now = datetime.now(timezone.utc)
        rows = [{
            "request_id": f"batch-{run}-{row[id_column]}", "ts": now, "env": settings.env,
            "endpoint": "batch", "chain": row["chain"], "chain_version": row["chain_version"],
            "prompt": (row["prompt_version"] or "").split("/")[0] or None,
            "prompt_version": (row["prompt_version"] or "").split("/")[-1] or None,
            "index_version": row["index_version"],
            "request": json.dumps({"question": row[question_column]}),
            "response": row["answer"] if row["error"] is None else row["error"],
            "status": 200 if row["error"] is None else 500, "latency_ms": row["latency_ms"],
            "client": os.environ.get("LLMOPS_USER") or "batch",
        } for row in chunk.to_dict("records")]
        append_rows(settings.lakehouse, "inference_log", rows)

    return write
