"""The Ray batch actors of a registered chain (:class:`llmops.batch.BatchWorker`).

:class:`ChainWorker` answers each question with the whole chain (its own chat model, or the
serving endpoint). :class:`PromptWorker` runs the chain up to its chat model only (retrieval
and the prompt) and leaves generation to vLLM in the job (:mod:`llmops.batch.vllm`).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from llmops.batch import BatchWorker
from llmops.batch.vllm import REQUEST_COLUMN, engine_request, load_deferred
from llmops.chains.registry import ask, load_at_endpoint
from llmops.config import Settings
from llmops.errors import BatchError
from llmops.registry import model_version

__all__ = ["OUTPUT_SCHEMA", "ChainWorker", "PromptWorker"]

#: the output columns of a chain's batch job, whichever worker answers
OUTPUT_SCHEMA: dict[str, str] = {
    "answer": "string", "sources": "string", "chain": "string", "chain_version": "string",
    "prompt_version": "string",  # the prompt's NAME/VERSION
    "index_version": "string", "latency_ms": "float64"}


class ChainWorker(BatchWorker):
    """One chain version per actor; answers a batch ``concurrency`` questions at a time."""

    output_schema: ClassVar[dict[str, str]] = OUTPUT_SCHEMA

    def __init__(self, settings: Settings, name: str, version: str, endpoint: str | None,
                 question_column: str = "question", concurrency: int = 4,
                 api_key_env: str = "LLMOPS_API_KEY", cache_salt: str | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import mlflow.pyfunc

        from llmops.stores import connect

        connect(settings)
        found = model_version(f"{name}/{version}", settings)
        if endpoint:
            base_url = endpoint.rstrip("/").removesuffix("/v1") + "/v1"
            self.model, _ = load_at_endpoint(found, base_url, api_key_env=api_key_env,
                                             cache_salt=cache_salt)
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


class PromptWorker(BatchWorker):
    """The chain up to its chat model, once per actor: retrieval and prompt for each row.

    Each row carries its engine request in :data:`llmops.batch.vllm.REQUEST_COLUMN`; the
    stages of :func:`llmops.batch.vllm.vllm_stages` fill ``answer``.
    """

    output_schema: ClassVar[dict[str, str]] = OUTPUT_SCHEMA

    def __init__(self, settings: Settings, name: str, version: str,
                 question_column: str = "question") -> None:
        self.model, self.calls = load_deferred(settings, name, version)
        self.name, self.version, self.column = name, str(version), question_column

    def process(self, rows: Any) -> Any:
        import pandas as pd

        # one question at a time: no generation happens here, and each row's calls are its own
        return pd.DataFrame([self._one(q) for q in rows[self.column].tolist()])

    def _one(self, question: Any) -> dict[str, Any]:
        made = self.calls.made
        row = ask(self.model, question)
        request = None
        if row["error"] is None:
            calls = self.calls.made - made
            try:
                if calls != 1:
                    raise BatchError(f"the chain called its chat model {calls} times for this "
                                     "question; vLLM in the batch job needs exactly one call")
                request = engine_request(self.calls.take(row["answer"]))
            except Exception as exc:  # noqa: BLE001 - this row's error
                row["error"] = f"{exc.__class__.__name__}: {exc}"
        self.calls.discard()
        return {"chain": self.name, "chain_version": self.version, **row, "answer": None,
                "sources": json.dumps(row["sources"]) if row["error"] is None else None,
                REQUEST_COLUMN: request}
