"""``llmops models``: build the offline model."""

from __future__ import annotations

from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["models"]


@click.group()
def models() -> None:
    """Offline models."""


@models.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: <models_dir>/tiny-<content hash>).")
@env_option
@click.pass_context
def tiny(ctx: click.Context, out: Path | None) -> None:
    """Build the offline tiny Llama (deterministic: same docs, same bytes)."""
    from llmops.models import build_tiny_model, ensure_tiny_model

    settings = settings_from(ctx)
    docs = settings.root / "docs"
    click.echo("building the tiny model ...", err=True)
    target = build_tiny_model(out, docs) if out else ensure_tiny_model(settings.models_dir, docs)
    click.echo(str(target))
