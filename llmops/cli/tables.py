"""``llmops tables``: maintenance of the environment's lakehouse tables."""

from __future__ import annotations

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["tables"]

_TABLE = click.option("--table", "names", multiple=True, metavar="NAME",
                      help="Only this table (repeatable; default every table that exists).")


@click.group()
def tables() -> None:
    """Compact and clean the lakehouse tables (safe while the gateway writes)."""


@tables.command()
@_TABLE
@env_option
@click.pass_context
def optimize(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Rewrite each table's many small files into a few large ones (one commit per table).

    Rows do not change. Delta serializes the commit with the gateway's appends, so
    it is safe while the gateway writes; the replaced files stay on disk until a
    vacuum past the retention.
    """
    from llmops.lakehouse import optimize_tables

    settings = settings_from(ctx)
    results = optimize_tables(settings.lakehouse, list(names) or None)
    for r in results:
        click.echo(f"{r['table']}: {r['files_removed']} files ({r['bytes_removed']} bytes) "
                   f"-> {r['files_added']} files ({r['bytes_added']} bytes)")
    if not results:
        click.echo(f"no tables in {settings.lakehouse}")


@tables.command()
@_TABLE
@click.option("--retention-hours", type=float, default=None,
              help="Keep files any version of the last H hours needs (default 168, Delta's).")
@click.option("--dry-run", is_flag=True, help="List the files that would go; delete nothing.")
@click.option("--force", is_flag=True,
              help="Allow a retention under 1 hour. Only when nothing writes: a shorter "
                   "retention can delete a file a running write is about to commit.")
@env_option
@click.pass_context
def vacuum(ctx: click.Context, names: tuple[str, ...], retention_hours: float | None,
           dry_run: bool, force: bool) -> None:
    """Delete files that no table version within the retention references.

    Safe while the gateway writes with the default retention (168 hours); a
    retention under 1 hour is refused unless --force. Readers or time travel to a
    version older than the retention lose their files.
    """
    from llmops.lakehouse import vacuum_tables
    from llmops.lakehouse.maintenance import DEFAULT_RETENTION_HOURS

    settings = settings_from(ctx)
    hours = DEFAULT_RETENTION_HOURS if retention_hours is None else retention_hours
    results = vacuum_tables(settings.lakehouse, list(names) or None, retention_hours=hours,
                            dry_run=dry_run, force=force)
    verb = "would delete" if dry_run else "deleted"
    for r in results:
        click.echo(f"{r['table']}: {verb} {len(r['files'])} files ({r['bytes']} bytes)")
        if dry_run:
            for f in r["files"]:
                click.echo(f"  {f}")
    if not results:
        click.echo(f"no tables in {settings.lakehouse}")


@tables.command()
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Delete rows older than N days (default: the environment's retention_days).")
@_TABLE
@click.option("--dry-run", is_flag=True, help="Count the rows that would go; delete nothing.")
@click.option("--purge-now", is_flag=True,
              help="Also delete the files that held the deleted rows now, instead of at the "
                   "next run after an hour.")
@env_option
@click.pass_context
def retain(ctx: click.Context, days: int | None, names: tuple[str, ...], dry_run: bool,
           purge_now: bool) -> None:
    """Delete the rows older than the retention (one Delta delete per table), then their files.

    A vacuum with a 1 hour retention follows the delete: it removes the files earlier
    deletes (and optimizes) replaced, never a file a running write is about to commit. The
    files this delete replaced go at the next run, or at once with --purge-now, which
    deletes exactly those files (safe while the gateway writes; a reader still scanning a
    version from before the delete loses them). Time travel reaches back one hour after it.
    """
    from llmops.lakehouse import retain_tables

    settings = settings_from(ctx)
    days = days if days is not None else settings.retention_days
    if days is None:
        raise click.UsageError(f"give --days, or set retention_days for the environment "
                               f"'{settings.env}' in llmops.yaml")
    results = retain_tables(settings.lakehouse, days, list(names) or None, dry_run=dry_run,
                            purge_now=purge_now)
    for r in results:
        if r["skipped"]:
            click.echo(f"{r['table']}: skipped ({r['skipped']})")
        elif dry_run:
            click.echo(f"{r['table']}: would delete {r['rows_deleted']} rows with "
                       f"{r['column']} before {r['cutoff'].isoformat()}")
        else:
            pending = (f"; {r['files_pending']} replaced files go at the next run after an hour"
                       if r["files_pending"] else "")
            click.echo(f"{r['table']}: deleted {r['rows_deleted']} rows with {r['column']} "
                       f"before {r['cutoff'].isoformat()}; removed {len(r['files_removed'])} "
                       f"files ({r['bytes_removed']} bytes){pending}")
    if not results:
        click.echo(f"no tables in {settings.lakehouse}")
