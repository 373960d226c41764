"""``llmops prompts``: sync templates from git, list, show, diff, alias."""

from __future__ import annotations

import json
from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["prompts"]


@click.group()
def prompts() -> None:
    """Prompt templates: git files and registry versions."""


@prompts.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@env_option
@click.pass_context
def sync(ctx: click.Context, folder: Path | None) -> None:
    """Register a new version of every template in FOLDER (default prompts/) that changed."""
    from llmops.prompts import sync_prompts

    settings = settings_from(ctx)
    report = sync_prompts(settings, folder)
    for name, version in report.registered:
        click.echo(f"registered {name}/{version}")
    for name, version in report.unchanged:
        click.echo(f"unchanged  {name}/{version}")
    click.echo(f"{len(report.registered)} registered, {len(report.unchanged)} unchanged")


@prompts.command("list")
@env_option
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List registered prompts with their latest version and aliases."""
    from llmops.prompts import list_prompts

    infos = list_prompts(settings_from(ctx))
    if not infos:
        click.echo("no prompts registered: run 'llmops prompts sync'")
        return
    click.echo(f"{'NAME':<24} {'LATEST':>6}  ALIASES")
    for info in infos:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(info.aliases.items())) or "-"
        click.echo(f"{info.name:<24} {info.latest_version:>6}  {aliases}")


@prompts.command()
@click.argument("ref")
@env_option
@click.pass_context
def show(ctx: click.Context, ref: str) -> None:
    """Show a prompt version: REF is NAME, NAME@ALIAS or NAME/VERSION."""
    from mlflow import MlflowClient

    from llmops.prompts import get_version
    from llmops.prompts.templates import template_text

    version = get_version(ref, settings_from(ctx))
    aliases = MlflowClient().get_prompt_version(version.name, version.version).aliases or []
    click.echo(f"{version.name}/{version.version}" + (f"  ({', '.join(aliases)})" if aliases else ""))
    if version.commit_message:
        click.echo(f"description: {version.commit_message}")
    for key, value in sorted((version.tags or {}).items()):
        click.echo(f"tag {key}: {value}")
    if version.model_config:
        click.echo(f"model parameters: {json.dumps(version.model_config, sort_keys=True)}")
    click.echo("")
    click.echo(template_text(version.template), nl=False)


@prompts.command()
@click.argument("name")
@click.argument("v1", type=int)
@click.argument("v2", type=int)
@env_option
@click.pass_context
def diff(ctx: click.Context, name: str, v1: int, v2: int) -> None:
    """Unified diff between versions V1 and V2 of prompt NAME."""
    from llmops.prompts import diff_versions

    text = diff_versions(name, v1, v2, settings_from(ctx))
    click.echo(text or f"{name}/{v1} and {name}/{v2} are identical", nl=not text)


@prompts.command()
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=int)
@env_option
@click.pass_context
def alias(ctx: click.Context, name: str, alias_name: str, version: int) -> None:
    """Point NAME@ALIAS at VERSION."""
    from llmops.prompts import set_alias

    set_alias(name, alias_name, version, settings_from(ctx))
    click.echo(f"{name}@{alias_name} -> {name}/{version}")
