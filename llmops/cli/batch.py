"""``llmops batch``: batch work on Ray (local by default, a cluster when configured)."""

from __future__ import annotations

from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["batch"]


@click.group()
def batch() -> None:
    """Run a registered chain over a table on Ray (envs.<env>.ray.address or RAY_ADDRESS for a
    cluster, else a local Ray on this machine's cores)."""


@batch.command("run")
@click.argument("ref", metavar="CHAIN@ALIAS")
@click.option("--input", "source", required=True, type=click.Path(path_type=Path, exists=True),
              help="A Delta table folder, Parquet (file or folder) or JSON lines (.jsonl).")
@click.option("--output", required=True,
              help="The output Delta table: a folder, or s3://bucket/prefix (credentials from "
                   "the AWS variables); a rerun skips the rows it already holds.")
@click.option("--endpoint", default=None, envvar="LLMOPS_ENDPOINT_URL",
              help="Gateway URL the chain's chat model calls (default: the chain as logged).")
@click.option("--question-column", default="question", show_default=True)
@click.option("--id-column", default="id", show_default=True,
              help="The stable row id (made from each row's content when the input has none).")
@click.option("--keep", multiple=True, help="An input column copied to the output (repeatable).")
@click.option("--actors", type=click.IntRange(1), default=None,
              help="Ray actors, each with the chain loaded once (default: half the CPUs).")
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True,
              help="Requests each actor keeps in flight to the endpoint.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--max-error-share", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="The run fails when more of its rows than this failed.")
@click.option("--no-log", is_flag=True, help="Do not write the rows to inference_log.")
@click.option("--vllm", is_flag=True,
              help="Run the chain's model as vLLM inside the job (ray.data.llm; a GPU per engine "
                   "where the cluster has them, else vLLM's CPU build), not at an endpoint.")
@click.option("--engines", type=click.IntRange(1), default=1, show_default=True,
              help="vLLM engines with --vllm (data parallel).")
@env_option
@click.pass_context
def run(ctx: click.Context, ref: str, source: Path, output: str, endpoint: str | None,
        question_column: str, id_column: str, keep: tuple[str, ...], actors: int | None,
        concurrency: int, batch_size: int, max_error_share: float, no_log: bool,
        vllm: bool, engines: int) -> None:
    """Answer every row of --input with the registered chain CHAIN@ALIAS (or CHAIN/VERSION)."""
    from llmops.chains.batch import batch_run

    result = batch_run(ref, source, settings_from(ctx), output, endpoint=endpoint,
                       question_column=question_column, id_column=id_column, keep=list(keep),
                       actors=actors, concurrency=concurrency, batch_size=batch_size,
                       max_error_share=max_error_share, log=not no_log, vllm=vllm,
                       engines=engines)
    click.echo(f"{result.job}: {result.summary()} (MLflow run {result.run_id})")
