"""``llmops eval``: evaluation runs and the promotion gate."""

from __future__ import annotations

from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["eval_group"]


@click.group(name="eval")
def eval_group() -> None:
    """Evaluate registered chains; gate their promotion."""


def _traces(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    if value is None or value == "all":
        return value
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise click.BadParameter(f"'{value}': give a number of rows (0 or more) or 'all'")
    return count


_TRACES_HELP = ("Rows per dataset traced with their assessments, plus every row that failed "
                "(default 8); every row is scored into the per-example table. 'all' traces "
                "every row (slower).")


def _table(metrics: dict[str, dict[str, float]]) -> str:
    names = sorted({m for values in metrics.values() for m in values})
    lines = [f"{'dataset':<16}" + "".join(f"{n:>15}" for n in names)]
    for dataset, values in metrics.items():
        lines.append(f"{dataset:<16}" + "".join(
            f"{values[n]:>15.3f}" if n in values else f"{'-':>15}" for n in names))
    return "\n".join(lines)


@eval_group.command()
@click.option("--model", "ref", required=True, help="NAME, NAME@ALIAS or NAME/VERSION.")
@click.option("--dataset", "datasets", multiple=True,
              help="A JSON lines file or 'feedback' (repeatable; default evals/golden.jsonl).")
@click.option("--endpoint", default=None, envvar="LLMOPS_ENDPOINT_URL",
              help="Gateway URL: the chain calls it, and the judge asks it.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Predictions at once.")
@click.option("--judge/--no-judge", default=False, help="Add the LLM-as-judge scorer.")
@click.option("--traces", callback=_traces, default=None, metavar="N|all", help=_TRACES_HELP)
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Predict in this process or on Ray actors (the batch path).")
@env_option
@click.pass_context
def run(ctx: click.Context, ref: str, datasets: tuple[str, ...], endpoint: str | None,
        concurrency: int, judge: bool, traces: int | str | None, engine: str) -> None:
    """Evaluate a registered chain; results go to MLflow and the eval_results table."""
    from llmops.evals import evaluate_chain
    from llmops.evals.runs import DEFAULT_TRACES

    report = evaluate_chain(ref, list(datasets) or None, settings_from(ctx), endpoint=endpoint,
                            concurrency=concurrency, judge=judge,
                            traces=DEFAULT_TRACES if traces is None else traces, engine=engine)
    click.echo(_table(report.metrics))
    for name, uri in report.tables.items():
        click.echo(f"per-example table of {name}: {uri}")
    click.echo(f"evaluated {report.model_uri} on {sum(report.rows.values())} examples in "
               f"{report.seconds:.1f} s (MLflow run {report.run_id})")


@eval_group.command()
@click.argument("name")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Gate settings (default evals/gate.yaml).")
@click.option("--endpoint", default=None, envvar="LLMOPS_ENDPOINT_URL",
              help="Gateway URL the chains call (overrides the file).")
@click.option("--traces", callback=_traces, default=None, metavar="N|all", help=_TRACES_HELP)
@click.option("--no-promote", is_flag=True,
              help="On a pass, leave the candidate at @staging for a rollout to decide "
                   "(llmops rollout start NAME --candidate staging).")
@env_option
@click.pass_context
def gate(ctx: click.Context, name: str, config_path: Path | None, endpoint: str | None,
         traces: int | str | None, no_promote: bool) -> None:
    """Gate NAME@staging against NAME@production: promote it, or tag it rejected (exit 1)."""
    from llmops.evals import load_gate_config, run_gate

    settings = settings_from(ctx)
    config = load_gate_config(settings, config_path)
    if endpoint:
        config = config.model_copy(update={"endpoint": endpoint})
    if traces is not None:
        config = config.model_copy(update={"traces": traces})
    result = run_gate(name, settings, config, promote_on_pass=not no_promote)
    for label, report in (("candidate", result.candidate_report),
                          ("production", result.baseline_report)):
        if report is not None:
            click.echo(f"{label} {report.model_uri}:\n{_table(report.metrics)}")
    if result.passed and not result.promoted:
        click.echo(f"passed: {name}/{result.candidate} stays @{config.candidate_alias}; "
                   f"@{config.baseline_alias} is still {result.baseline or 'none'}")
        return
    if result.passed:
        click.echo(f"passed: {name}/{result.candidate} is now @{config.baseline_alias}"
                   f" (was {result.baseline or 'none'})")
        return
    click.echo(f"error: {name}/{result.candidate} rejected:", err=True)
    for reason in result.reasons:
        click.echo(f"  - {reason}", err=True)
    ctx.exit(1)
