"""``llmops index``: the vector-database update job."""

from __future__ import annotations

from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["index"]


@click.group()
def index() -> None:
    """The vector index of the documents."""


@index.command()
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="Folder of Markdown/text files or a Delta table (default: index.source).")
@click.option("--collection", default=None, help="Chroma collection (default: index.collection).")
@click.option("--full", is_flag=True, help="Re-embed every chunk.")
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="Embed here or on Ray actors (default: index.engine, 'local').")
@env_option
@click.pass_context
def update(ctx: click.Context, source: Path | None, collection: str | None, full: bool,
           dry_run: bool, engine: str | None) -> None:
    """Sync the collection with the source: embed new chunks, delete stale ones."""
    from llmops.indexing import update_index

    report = update_index(
        settings_from(ctx), source=source, collection=collection, full=full, dry_run=dry_run,
        echo=lambda line: click.echo(line, err=True), engine=engine,
    )
    click.echo(report.summary())
    if not dry_run:
        click.echo(f"embedded {report.embedded} chunks in {report.seconds:.1f} s"
                   + (f"; run {report.run_id}" if report.run_id else ""))
