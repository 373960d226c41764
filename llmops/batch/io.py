"""A batch job's input (Delta, Parquet, JSON lines or a pandas frame) and its committed output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from llmops.config import object_store_uri
from llmops.errors import BatchError, ConfigError
from llmops.lakehouse.location import is_remote, remote_error, storage_options

__all__ = ["committed_ids", "output_location", "describe_input", "input_kind", "read_input", "stable_ids"]


def input_kind(source: Any) -> str:
    """``frame``, ``delta``, ``parquet`` or ``jsonl``; a clear error for anything else."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return "frame"
    path = Path(source)
    if not path.exists():
        raise BatchError(f"input {path} does not exist")
    if path.is_dir():
        if (path / "_delta_log").is_dir():
            return "delta"
        if any(path.glob("*.parquet")):
            return "parquet"
        raise BatchError(f"input {path} is a folder but neither a Delta table (no _delta_log) "
                         "nor a folder of Parquet files")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise BatchError(f"input {path}: give a Delta table folder, Parquet (.parquet or a folder of "
                     "them) or JSON lines (.jsonl)")


def describe_input(source: Any) -> str:
    kind = input_kind(source)
    return f"a pandas frame of {len(source)} rows" if kind == "frame" else f"{kind} {source}"


def stable_ids(frame: Any, columns: list[str]) -> list[str]:
    """Row ids for input without an id column: a hash of each row's content (identical rows
    share an id, so a rerun skips both once either is committed)."""
    rows = frame[columns].to_dict("records")
    return [hashlib.sha256(json.dumps(r, sort_keys=True, default=str).encode()).hexdigest()[:24]
            for r in rows]


def read_input(source: Any, id_column: str, required: list[str]) -> Any:
    """``source`` as a Ray Dataset whose rows carry ``id_column`` (made from content when the
    input has none) and every column in ``required``."""
    import ray.data

    kind = input_kind(source)
    try:
        if kind == "frame":
            ds = ray.data.from_pandas(source)
        elif kind == "delta":
            ds = ray.data.read_delta(str(source))
        elif kind == "parquet":
            ds = ray.data.read_parquet(str(source))
        else:
            ds = ray.data.read_json(str(source), lines=True)
        columns = ds.columns() or []
    except Exception as exc:  # noqa: BLE001 - any reader error is the input's fault here
        raise BatchError(f"cannot read {describe_input(source)}: "
                         f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}") from exc
    missing = [c for c in required if c not in columns]
    if missing:
        raise BatchError(f"{describe_input(source)} has no column {', '.join(map(repr, missing))}"
                         f" (it has {', '.join(columns) or 'none'})")
    if id_column not in columns:
        content = list(columns)

        def add_ids(batch: Any) -> Any:
            batch[id_column] = stable_ids(batch, content)
            return batch

        ds = ds.map_batches(add_ids, batch_format="pandas")
    return ds


def output_location(value: str | Path) -> Path | str:
    """A batch job's output table: a folder, or an ``s3://bucket/prefix`` URI (its credentials
    from the AWS variables, as the lakehouse's); any other ``scheme://`` is refused."""
    if "://" not in str(value):
        return Path(value)
    try:
        return object_store_uri(str(value), "--output")
    except ConfigError as exc:
        raise BatchError(str(exc)) from None


def committed_ids(output: Path | str | None, id_column: str) -> set[Any]:
    """The ids already in the output Delta table (empty when it does not exist yet)."""
    if output is None:
        return set()
    from deltalake import DeltaTable

    try:
        if is_remote(output):
            options = storage_options(output)
            if not DeltaTable.is_deltatable(str(output), storage_options=options):
                return set()
            table = DeltaTable(str(output), storage_options=options)
        elif (Path(output) / "_delta_log").is_dir():
            table = DeltaTable(str(output))
        else:
            return set()
        dataset = table.to_pyarrow_dataset()
    except Exception as exc:
        if is_remote(output):
            raise remote_error(output, exc, "read the batch output in") from exc
        raise
    if id_column not in dataset.schema.names:
        raise BatchError(f"output {output} exists but has no '{id_column}' column: it is not "
                         "this job's output; give another --output")
    return set(dataset.to_table(columns=[id_column]).column(id_column).to_pylist())
