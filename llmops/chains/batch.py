"""Batch inference: a registered chain over a table, on the batch path (Ray actors).

Each actor loads the chain version once; its chat model is the serving endpoint when one is
given (each actor keeps ``concurrency`` requests in flight, so the endpoint sees at most
actors x concurrency), else the chain's own model as logged. Output rows hold the answer,
its sources, the versions that made it and the error; every row also goes to
``inference_log`` with endpoint ``batch``, in the same chunks as the output commits, its
question and answer redacted where the environment redacts (``llmops.privacy``; the output
table holds them as answered).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmops.batch import BatchResult, run_batch
from llmops.batch.vllm import engine_model, vllm_stages
from llmops.chains.workers import OUTPUT_SCHEMA, ChainWorker, PromptWorker
from llmops.config import Settings
from llmops.errors import BatchError
from llmops.lakehouse import append_rows, inference_row
from llmops.privacy import redacted_row, redactor_for
from llmops.registry import model_version

__all__ = ["batch_run"]


def batch_run(ref: str, source: Any, settings: Settings, output: Path | str | None = None, *,
              endpoint: str | None = None, question_column: str = "question",
              id_column: str = "id", keep: list[str] | None = None, actors: int | None = None,
              concurrency: int = 4, batch_size: int = 16, max_error_share: float = 0.1,
              commit_rows: int = 256, progress: bool = True, log: bool = True,
              api_key_env: str = "LLMOPS_API_KEY", vllm: bool = False, engines: int = 1,
              engine_kwargs: dict[str, Any] | None = None,
              cache_salt: str | None = None) -> BatchResult:
    """Answer every row of ``source`` with the registered chain ``ref`` (NAME@ALIAS, NAME/V).

    ``output`` is a Delta table, a folder or an ``s3://`` URI (a rerun skips the rows it
    holds), or None for a frame.
    With ``log`` every answered row goes to ``inference_log`` with endpoint ``batch``
    (redacted where the environment redacts).
    With ``vllm`` the chain's model runs as vLLM inside the job (``engines`` engines, each on
    a GPU where the cluster has them; see :mod:`llmops.batch.vllm`), not at an endpoint.
    ``cache_salt`` goes with each request to the endpoint (see ``ChatModelSettings``).
    """
    found = model_version(ref, settings)
    job = f"{found.name}/{found.version}"
    on_commit = _inference_log(settings, question_column, id_column) if log else None
    if vllm:
        if endpoint:
            raise BatchError("give an endpoint or vLLM in the job, not both")
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
            then=vllm_stages(model, adapter, id_column, kept, OUTPUT_SCHEMA, engines=engines,
                             batch_size=batch_size, engine_kwargs=engine_kwargs))
    return run_batch(
        f"batch {job}", source, ChainWorker, settings, output=output, id_column=id_column,
        required=[question_column], keep=[question_column, *(keep or [])],
        worker_kwargs={"settings": settings, "name": found.name, "version": str(found.version),
                       "endpoint": endpoint, "question_column": question_column,
                       "concurrency": concurrency, "api_key_env": api_key_env,
                       "cache_salt": cache_salt},
        batch_size=batch_size, actors=actors, max_error_share=max_error_share,
        commit_rows=commit_rows, progress=progress, on_commit=on_commit)


def _inference_log(settings: Settings, question_column: str, id_column: str) -> Any:
    """The job's ``on_commit``: each committed chunk appended to ``inference_log`` (on the
    driver, so one redactor serves the whole job)."""
    run = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    client = os.environ.get("LLMOPS_USER") or "batch"
    redactor = redactor_for(settings)

    def write(chunk: Any) -> None:
        now = datetime.now(timezone.utc)
        rows = [redacted_row(redactor, inference_row(
            f"batch-{run}-{row[id_column]}", "batch", ts=now, env=settings.env,
            chain=row["chain"], chain_version=row["chain_version"],
            prompt_ref=row["prompt_version"], index_version=row["index_version"],
            request=json.dumps({"question": row[question_column]}),
            response=row["answer"] if row["error"] is None else row["error"],
            status=200 if row["error"] is None else 500, latency_ms=row["latency_ms"],
            client=client,
        )) for row in chunk.to_dict("records")]
        append_rows(settings.lakehouse, "inference_log", rows)

    return write

