"""The lakehouse tables: their names and Arrow schemas (the contract other tools read)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmops.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["TABLES", "schema"]

# column name -> Arrow type name; every table is append-only, one row per event.
TABLES: dict[str, dict[str, str]] = {
    "inference_log": {
        "request_id": "string", "ts": "timestamp", "env": "string", "endpoint": "string",
        "model": "string", "adapter": "string", "chain": "string", "chain_version": "string",
        "prompt": "string", "prompt_version": "string", "request": "string", "response": "string",
        "status": "int32", "latency_ms": "float64", "prompt_tokens": "int64",
        "completion_tokens": "int64", "client": "string",
        # the collection version the chain's retriever read for this answer
        "index_version": "string",
        # who the client says the end user is (the body's "user"); "client" is the key's name
        "end_user": "string",
        # the X-Request-Id the client sent, kept beside the server's own request_id
        "client_request_id": "string",
        # the rollout this answer was part of, and its arm ("production" or "candidate")
        "rollout_id": "string", "rollout_arm": "string",
    },
    "feedback": {
        "feedback_id": "string", "request_id": "string", "ts": "timestamp", "rating": "int32",
        "score": "int32", "correction": "string", "comment": "string", "source": "string", "user": "string",
    },
    "eval_results": {
        "run_id": "string", "ts": "timestamp", "model_uri": "string", "dataset": "string",
        "metric": "string", "value": "float64",
        # the example a row scores (its id in the dataset); null on the run's mean rows
        "example_id": "string",
    },
    "monitoring": {
        "run_id": "string", "ts": "timestamp", "window_start": "timestamp",
        "window_end": "timestamp", "group": "string", "requests": "int64", "errors": "int64",
        "error_rate": "float64", "latency_p50_ms": "float64", "latency_p95_ms": "float64",
        "thumbs_up_rate": "float64", "mean_score": "float64", "feedback_coverage": "float64",
        "breaches": "string", "status": "string",
    },
    "index_runs": {
        "run_id": "string", "ts": "timestamp", "source": "string", "collection": "string",
        "added": "int64", "updated": "int64", "deleted": "int64", "unchanged": "int64",
        "index_version": "string", "seconds": "float64",
    },
    # one row per rollout event: its start, each evaluation's decision, its end; the last row
    # of a rollout is its state (what gateways route by)
    "rollouts": {
        "rollout_id": "string", "ts": "timestamp", "chain": "string", "production": "string",
        "candidate": "string", "step": "int32", "share": "int32", "status": "string",
        "decision": "string", "reasons": "string", "step_started": "timestamp",
        "prod_requests": "int64", "prod_errors": "int64", "prod_rated": "int64",
        "prod_up": "int64", "prod_latency_p95_ms": "float64",
        "cand_requests": "int64", "cand_errors": "int64", "cand_rated": "int64",
        "cand_up": "int64", "cand_latency_p95_ms": "float64",
        "diff": "float64", "diff_low": "float64", "diff_high": "float64",
        "spec": "string", "mlflow_run_id": "string", "by": "string",
    },
}


def schema(table: str) -> pa.Schema:
    """The Arrow schema of a lakehouse table."""
    import pyarrow as pa

    if table not in TABLES:
        raise ConfigError(f"unknown lakehouse table '{table}': one of {', '.join(TABLES)}")
    types = {
        "string": pa.string(), "int32": pa.int32(), "int64": pa.int64(),
        "float64": pa.float64(), "timestamp": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(name, types[kind]) for name, kind in TABLES[table].items()])
