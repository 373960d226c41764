"""The one batch path: a table in, a model per Ray actor, a Delta table (or a frame) out.

Every batch job (index builds, batch inference, evaluations) runs through :func:`run_batch`:

- the input (Delta, Parquet, JSON lines or a pandas frame) becomes a Ray Dataset whose rows
  carry a stable id;
- ``map_batches`` over an actor pool: each actor builds its :class:`BatchWorker` once (the
  model, the embedder, the chain), never per row or per batch; GPUs through ``num_gpus``;
- one bad row never kills the job: a worker marks the rows it could not do in an ``error``
  column, and a batch that raises is retried row by row so only the bad rows carry the error.
  The job fails only past ``max_error_share``;
- the driver commits the output every ``commit_rows`` rows, each commit one atomic Delta
  transaction, so a crash loses at most the rows since the last commit, and a rerun skips
  every id already committed;
- a progress bar on the driver; the run's figures go to MLflow.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmops.batch.io import committed_ids, describe_input, output_location, read_input
from llmops.batch.runtime import RayInfo, ray_session
from llmops.config import Settings
from llmops.errors import BatchError
from llmops.lakehouse.location import is_remote, remote_error, storage_options

__all__ = ["BatchResult", "BatchWorker", "run_batch"]

class BatchWorker:
    """A model loaded once per Ray actor.

    Subclasses build what they need in ``__init__`` (it runs once per actor) and map a batch
    of input rows to output rows in :meth:`process`: one output row per input row, in order,
    with the columns of ``output_schema``. A row it cannot do gets a message in an ``error``
    column (the other rows of the batch still count); an exception that escapes
    ``process`` makes the job retry that batch row by row.
    """

    #: output column -> Arrow type name (string, int32, int64, float64, bool, float32_list)
    output_schema: ClassVar[dict[str, str]] = {}

    def process(self, rows: Any) -> Any:  # pandas in, pandas out
        raise NotImplementedError


@dataclass
class BatchResult:
    """What one run did: rows processed now, rows skipped as already committed, errors."""

    job: str
    rows: int = 0
    skipped: int = 0
    errors: int = 0
    commits: int = 0
    seconds: float = 0.0
    actors: int = 0
    nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> rows it processed
    output: Path | str | None = None  # a folder, or an s3:// URI
    frame: Any = None  # the output rows when there is no output table
    run_id: str | None = None
    ray: RayInfo | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        where = f" into {self.output}" if self.output else ""
        skipped = f", {self.skipped} already done" if self.skipped else ""
        return (f"{self.rows} rows{where} in {self.seconds:.1f} s ({self.rows_per_s:.1f} rows/s, "
                f"{self.actors} actors on {len(self.nodes) or 1} node(s)), {self.errors} "
                f"errors{skipped}")


class _Actor:
    """Holds one worker for the life of a Ray actor; maps a pandas batch to output rows."""

    def __init__(self, worker: type[BatchWorker], kwargs: dict[str, Any], id_column: str,
                 keep: list[str], threads: int = 1) -> None:
        import os
        import sys

        import ray

        # Ray caps a fractional-CPU actor's math libraries at one thread; the actor's share of
        # its node's cores is what the job means it to use (read when torch is first imported,
        # which models usually do lazily)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        self.worker = worker(**kwargs)
        self.id_column, self.keep = id_column, keep
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        try:
            out = self._run(batch)
        except Exception:  # noqa: BLE001 - isolate the bad rows: retry one by one
            parts = []
            for i in range(len(batch)):
                row = batch.iloc[i:i + 1]
                try:
                    parts.append(self._run(row))
                except Exception as exc:  # noqa: BLE001 - the row's error, kept in its column
                    failed = pd.DataFrame({name: [None] for name in self.worker.output_schema})
                    failed["error"] = [_message(exc)]
                    parts.append(self._frame(row, failed))
            out = pd.concat(parts, ignore_index=True)
        out["_node"] = self.node
        return out

    def _run(self, batch: Any) -> Any:
        produced = self.worker.process(batch.reset_index(drop=True))
        if len(produced) != len(batch):
            raise BatchError(f"{type(self.worker).__name__}.process returned {len(produced)} "
                             f"rows for {len(batch)}")
        if "error" not in produced.columns:
            produced["error"] = None
        return self._frame(batch, produced)

    def _frame(self, batch: Any, produced: Any) -> Any:
        kept = batch[[self.id_column, *self.keep]].reset_index(drop=True)
        produced = produced.reset_index(drop=True)
        for column in kept.columns:
            if column in produced.columns:
                produced = produced.drop(columns=[column])
        return kept.join(produced)


def _message(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].name}:{last[0].lineno})" if last else ""
    return f"{exc.__class__.__name__}: {str(exc)[:500]}{where}"


def _skip_done(batch: Any, id_column: str, done: set[Any]) -> Any:
    return batch[~batch[id_column].isin(done)]


def run_batch(
    job: str,
    source: Any,
    worker: type[BatchWorker],
    settings: Settings,
    *,
    worker_kwargs: dict[str, Any] | None = None,
    output: Path | str | None = None,
    id_column: str = "id",
    required: list[str] | None = None,
    keep: list[str] | None = None,
    batch_size: int = 32,
    actors: int | None = None,
    cpus_per_actor: float = 0.5,
    gpus_per_actor: float = 0.0,
    resources: dict[str, float] | None = None,
    max_error_share: float = 0.1,
    commit_rows: int = 1000,
    progress: bool = True,
    on_commit: Callable[[Any], None] | None = None,
    mlflow_run: bool = True,
    keep_frame: bool = True,
    then: Callable[[Any, RayInfo], Any] | None = None,
) -> BatchResult:
    """Run ``worker`` over ``source``'s rows on Ray; write ``output`` (a Delta table: a folder
    or an ``s3://`` URI, appended in commits of ``commit_rows`` rows) or return the rows as
    ``result.frame``.

    ``keep`` input columns are copied to the output beside the id. ``on_commit`` is called
    with each committed chunk (a pandas frame) after its commit, for side tables or a store
    of its own (then ``keep_frame=False`` keeps no rows in memory). ``then`` adds stages
    after the workers' map (a Ray Dataset and the session in, a Dataset out: an engine that
    generates in batch, say); each output row keeps its id, ``_node`` and ``error``. Raises
    :class:`BatchError` on bad input, or once more than ``max_error_share`` of the rows
    failed (what was committed stays, with each failed row's error).
    """
    import pandas as pd

    if not 0 <= max_error_share <= 1:
        raise BatchError(f"max_error_share {max_error_share} is not a share between 0 and 1")
    if batch_size < 1 or commit_rows < 1:
        raise BatchError("batch_size and commit_rows must be at least 1")
    keep = [c for c in (keep or []) if c != id_column]
    result = BatchResult(job=job, output=output_location(output) if output is not None else None)
    start = time.perf_counter()
    with ray_session(settings) as info:
        result.ray = info
        import ray.data

        ds = read_input(source, id_column, [*(required or []), *keep])
        done = committed_ids(result.output, id_column)
        if done:
            ds = ds.map_batches(_skip_done, fn_kwargs={"id_column": id_column, "done": done},
                                batch_format="pandas")
        # blocks of about one batch: the actors share the work and the commits come often
        ds = ds.repartition(target_num_rows_per_block=batch_size)
        total = ds.count()
        result.skipped = len(done)
        frames: list[Any] | None = [] if keep_frame else None
        try:
            # nothing left (a rerun of a finished job, or no rows): no actor pool, and no
            # engine, is started only to be handed nothing
            if total:
                result.actors = (actors or settings.ray.actors
                                 or max(1, min(8, int(info.cpus // 2) or 1)))
                remote: dict[str, Any] = {"num_cpus": cpus_per_actor}
                if gpus_per_actor:
                    remote["num_gpus"] = gpus_per_actor
                if resources:
                    remote["resources"] = resources
                mapped = ds.map_batches(
                    _Actor, fn_constructor_kwargs={"worker": worker, "kwargs": worker_kwargs or {},
                                                   "id_column": id_column, "keep": keep,
                                                   "threads": _threads(info, result.actors)},
                    compute=ray.data.ActorPoolStrategy(size=result.actors),
                    batch_size=batch_size, batch_format="pandas", **remote)
                if then is not None:
                    mapped = then(mapped, info)
                _consume(result, mapped, total, worker, frames, on_commit, commit_rows,
                         max_error_share, batch_size, progress)
        finally:
            result.seconds = time.perf_counter() - start
    if result.output is None and frames is not None:
        result.frame = (pd.concat(frames, ignore_index=True) if frames
                        else pd.DataFrame(columns=[id_column, *keep, *worker.output_schema,
                                                   "error"]))
    if mlflow_run:
        result.run_id = _log_run(result, settings, source, worker)
    _check_errors(result, max_error_share, batch_size, final=True)
    return result


def _consume(result: BatchResult, mapped: Any, total: int, worker: type[BatchWorker],
             frames: list[Any] | None, on_commit: Callable[[Any], None] | None, commit_rows: int,
             max_error_share: float, batch_size: int, progress: bool) -> None:
    """Read the job's output rows as they come, committing every ``commit_rows`` of them."""
    import pandas as pd

    buffered: list[Any] = []
    pending = 0  # rows in buffered
    bar = _bar(total, result.job, progress)
    try:
        for batch in mapped.iter_batches(batch_format="pandas", batch_size=None):
            if len(batch) == 0:
                continue
            for node, count in batch["_node"].value_counts().items():
                result.nodes[str(node)] = result.nodes.get(str(node), 0) + int(count)
            batch = batch.drop(columns=["_node"])
            result.rows += len(batch)
            result.errors += int(batch["error"].notna().sum())
            bar.update(len(batch))
            bar.set_postfix(errors=result.errors, refresh=False)
            buffered.append(batch)
            pending += len(batch)
            if pending >= commit_rows:
                _commit(result, pd.concat(buffered, ignore_index=True), worker, frames,
                        on_commit)
                buffered, pending = [], 0
                _check_errors(result, max_error_share, batch_size, final=False)
        if buffered:
            _commit(result, pd.concat(buffered, ignore_index=True), worker, frames, on_commit)
    finally:
        bar.close()


def _threads(info: RayInfo, actors: int) -> int:
    """Math-library threads per actor: its node's CPUs shared by the actors on that node."""
    nodes = max(1, info.nodes)
    per_node = -(-actors // nodes)
    return max(1, int(info.cpus / nodes) // per_node)


def _bar(total: int, job: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=job, unit="row", disable=not enabled, dynamic_ncols=True)


def _commit(result: BatchResult, chunk: Any, worker: type[BatchWorker], frames: list[Any] | None,
            on_commit: Callable[[Any], None] | None) -> None:
    if result.output is None:
        if frames is not None:
            frames.append(chunk)
    else:
        from deltalake import write_deltalake

        try:
            write_deltalake(str(result.output), _arrow(chunk, worker), mode="append",
                            storage_options=storage_options(result.output))
        except Exception as exc:
            if is_remote(result.output):
                raise remote_error(result.output, exc, "write the batch output to") from exc
            raise
    result.commits += 1
    if on_commit is not None:
        on_commit(chunk)


def _arrow(chunk: Any, worker: type[BatchWorker]) -> Any:
    """The chunk as Arrow, with the worker's declared types (a column that is all None in
    one chunk must not get a null type)."""
    import pyarrow as pa

    declared = {**worker.output_schema, "error": "string"}
    fields = []
    for name in chunk.columns:
        if declared.get(name) == "float32_list":
            fields.append(pa.field(name, pa.list_(pa.float32())))
        elif name in declared:
            fields.append(pa.field(name, pa.type_for_alias(declared[name])))
        else:
            inferred = pa.Array.from_pandas(chunk[name]).type
            fields.append(pa.field(name, pa.string() if pa.types.is_null(inferred) else inferred))
    return pa.Table.from_pandas(chunk, schema=pa.schema(fields), preserve_index=False)


def _check_errors(result: BatchResult, max_share: float, batch_size: int, final: bool) -> None:
    """Fail once the error share is past the limit (mid-run only with enough rows to tell)."""
    if not result.rows or (not final and result.rows < 4 * batch_size):
        return
    share = result.errors / result.rows
    if share > max_share:
        where = f"; the rows done so far are in {result.output}" if result.output else ""
        raise BatchError(f"{result.job}: {result.errors} of {result.rows} rows failed "
                         f"({share:.1%}, above the limit of {max_share:.1%}){where}: see the "
                         "'error' column")


def _log_run(result: BatchResult, settings: Settings, source: Any, worker: type[BatchWorker]) -> str:
    import mlflow

    from llmops.stores import connect

    nested = mlflow.active_run() is not None  # e.g. an evaluation's predictions
    if not nested:
        connect(settings)
    with mlflow.start_run(run_name=f"batch {result.job}", nested=nested) as run:
        mlflow.set_tags({"llmops.kind": "batch", "llmops.batch.job": result.job})
        mlflow.log_params({"input": describe_input(source)[:500], "worker": worker.__name__,
                           "output": str(result.output or "frame"),
                           "ray": result.ray.address if result.ray else "",
                           "ray_nodes": result.ray.nodes if result.ray else 0})
        mlflow.log_metrics({"rows": result.rows, "skipped": result.skipped,
                            "errors": result.errors, "seconds": result.seconds,
                            "rows_per_s": result.rows_per_s, "actors": result.actors,
                            "nodes": len(result.nodes), "commits": result.commits})
    return str(run.info.run_id)
