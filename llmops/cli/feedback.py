"""``llmops feedback``: datasets built from human feedback."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["feedback"]


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"'{value}' is not an ISO date or time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@click.group()
def feedback() -> None:
    """Human feedback."""


@feedback.command()
@click.option("--kind", type=click.Choice(["eval", "sft", "kto"]), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSON lines file.")
@click.option("--since", default=None, help="Feedback at or after this ISO time.")
@click.option("--until", default=None, help="Feedback before this ISO time.")
@click.option("--chain", default=None, help="Only requests served by this chain.")
@click.option("--model", default=None, help="Only requests served by this model.")
@click.option("--adapter", default=None, help="Only requests served with this adapter.")
@click.option("--no-redact", is_flag=True, help="Keep e-mail addresses and phone numbers.")
@env_option
@click.pass_context
def dataset(ctx: click.Context, kind: str, out: Path, since: str | None, until: str | None,
            chain: str | None, model: str | None, adapter: str | None, no_redact: bool) -> None:
    """Build an eval, SFT or KTO dataset from feedback joined with the inference log."""
    from llmops.feedback import build_dataset, redact_personal_data

    report = build_dataset(
        kind, out, settings_from(ctx), since=_when(since), until=_when(until), chain=chain,
        model=model, adapter=adapter, redact=None if no_redact else redact_personal_data,  # type: ignore[arg-type]
    )
    click.echo(f"wrote {report.rows} {kind} rows to {report.out} (from {report.requests} "
               f"requests with feedback; {report.duplicates} duplicates collapsed)")
