"""``llmops monitor``: figures over a window of the tables, against thresholds."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["monitor"]

# distinct from 1 (the job failed): the job ran, and a threshold was crossed
THRESHOLD_CROSSED = 3


@click.group()
def monitor() -> None:
    """Monitor the endpoint from its tables."""


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


@monitor.command()
@click.option("--hours", type=float, default=None, help="Window length (default: the config's).")
@click.option("--until", default=None, help="Window end, ISO time (default now).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Thresholds (default evals/monitor.yaml).")
@env_option
@click.pass_context
def run(ctx: click.Context, hours: float | None, until: str | None,
        config_path: Path | None) -> None:
    """Compute volume, errors, latency and feedback per version; exit 3 on a crossed threshold."""
    from llmops.evals import load_monitor_config, run_monitor

    settings = settings_from(ctx)
    config = load_monitor_config(settings, config_path)
    if hours is not None:
        if hours <= 0:
            raise click.BadParameter("must be positive", param_hint="--hours")
        config = config.model_copy(update={"window_hours": hours})
    end = None
    if until:
        try:
            end = datetime.fromisoformat(until)
        except ValueError as exc:
            raise click.BadParameter(f"'{until}' is not an ISO time", param_hint="--until") from exc
        end = end if end.tzinfo else end.replace(tzinfo=timezone.utc)
    report = run_monitor(settings, config, end=end)
    cols = ("requests", "error_rate", "latency_p50_ms", "latency_p95_ms", "thumbs_up_rate",
            "mean_score", "feedback_coverage")
    click.echo(f"{'group':<48}" + "".join(f"{c:>18}" for c in cols))
    for g in report.groups:
        click.echo(f"{g['group'][:47]:<48}" + "".join(f"{_fmt(g[c]):>18}" for c in cols))
    click.echo(f"window {report.window_start:%Y-%m-%d %H:%M} to {report.window_end:%Y-%m-%d %H:%M}"
               f" UTC; plot {report.plot}; MLflow run {report.run_id}")
    if report.breaches:
        click.echo("error: monitoring thresholds crossed:", err=True)
        for line in report.breaches:
            click.echo(f"  - {line}", err=True)
        ctx.exit(THRESHOLD_CROSSED)
